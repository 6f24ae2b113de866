"""Distillers: a student, a frozen teacher and the loss terms of one method, fused in one Cell.

``construct(images, labels, *cached)`` returns ``(total_loss, terms)`` where ``terms`` is a float32
tensor of the weighted loss terms, one per name in the distiller's ``term_names`` (e.g.
``("gt", "ofa_final", "ofa_branches")`` for OFA), so a training step can log every term without a second
forward. The arguments are the config's keys, checked there (``src/config.py``) and not again here.
Every trainable cell besides the student (OFA exit branches, the RSD projector) sits in ``branches``:
the optimizer, mixed precision and resume states take them from there, and none of them is exported.

The teacher's outputs a method uses are named in ``teacher_outputs`` ("logits", "feature"). Built with a
model as teacher (or a ``TeacherSource`` of ``src.teacher`` holding one), the distiller runs it (frozen);
built with a ``TeacherSource`` without a model (a teacher-output cache), no teacher exists and ``cached``
are those outputs, one batch column each.
"""
import mindspore as ms
from mindspore import nn, ops

from src.config import DISTILLERS as METHODS
from src.teacher.frozen import FrozenTeacher
from src.teacher.source import TeacherSource

from .branches import build_branch
from .losses import cross_entropy, dist_loss, dkd_loss, kd_loss, ofa_loss, rsd_loss
from .projector import RSDProjector

# OFA's terms: cross-entropy, the OFA loss on the student's final logits, the OFA losses of the exit branches
TERM_NAMES = ("gt", "ofa_final", "ofa_branches")


class Distiller(nn.Cell):
    """Base of the distillers: where the teacher's outputs come from."""

    needs_teacher = True
    teacher_outputs = ("logits",)

    def _set_teacher(self, teacher):
        model = teacher.model if isinstance(teacher, TeacherSource) else teacher
        self.from_cache = teacher is not None and model is None
        self.teacher = FrozenTeacher(model, self.teacher_outputs) if model is not None else None

    def teacher_inputs(self, images, cached):
        """The teacher's ``teacher_outputs`` on ``images``: the cached batch columns when given (a teacher-output
        cache, or a train step that ran the frozen teacher outside its gradient), else the frozen teacher's."""
        if self.from_cache or len(cached) > 0:
            out = ()
            for value in cached:
                out = out + (ops.stop_gradient(value),)
            return out
        return self.teacher.outputs(images)


class StudentOnly(Distiller):
    """``none``: the student trained alone with (smoothed) cross-entropy."""

    needs_teacher = False
    teacher_outputs = ()
    term_names = ("gt",)

    def __init__(self, student, teacher=None, num_classes=None, label_smoothing=0.1, loss_weights=(1.0, 1.0),
                 **unused):
        super().__init__()
        self.student = student
        self._set_teacher(None)
        self.label_smoothing = float(label_smoothing)
        self.w_gt = float(loss_weights[0])
        self.branches = nn.CellList()

    def construct(self, images, labels, *cached):
        logits = self.student(images)
        loss_gt = self.w_gt * cross_entropy(logits, labels, self.label_smoothing)
        return loss_gt, ops.stack((loss_gt,))


class LogitDistiller(Distiller):
    """Base of the logit-only methods: ``gt`` term plus one ``kd`` term from ``distill_term``."""

    term_names = ("gt", "kd")

    def __init__(self, student, teacher, num_classes=None, label_smoothing=0.1, loss_weights=(1.0, 1.0),
                 temperature=1.0, **unused):
        super().__init__()
        self.student = student
        self._set_teacher(teacher)
        self.label_smoothing = float(label_smoothing)
        self.w_gt, self.w_kd = float(loss_weights[0]), float(loss_weights[1])
        self.temperature = float(temperature)
        self.branches = nn.CellList()

    def distill_term(self, logits_s, logits_t, labels):
        raise NotImplementedError

    def construct(self, images, labels, *cached):
        logits_t = self.teacher_inputs(images, cached)[0]
        logits_s = self.student(images)
        loss_gt = self.w_gt * cross_entropy(logits_s, labels, self.label_smoothing)
        loss_kd = self.w_kd * self.distill_term(logits_s, logits_t, labels)
        return loss_gt + loss_kd, ops.stack((loss_gt, loss_kd))


class KDDistiller(LogitDistiller):
    """Hinton KD: KL(teacher || student) at temperature T, times T^2."""

    def distill_term(self, logits_s, logits_t, labels):
        return kd_loss(logits_s, logits_t, self.temperature)


class DISTDistiller(LogitDistiller):
    """DIST: inter- and intra-class Pearson relations of the predictions, at ``temperature`` (the paper's tau)."""

    def __init__(self, student, teacher, beta=1.0, gamma=1.0, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.beta, self.gamma = float(beta), float(gamma)

    def distill_term(self, logits_s, logits_t, labels):
        return dist_loss(logits_s, logits_t, self.beta, self.gamma, self.temperature)


class DKDDistiller(LogitDistiller):
    """DKD: decoupled target-class and non-target-class KD."""

    def __init__(self, student, teacher, alpha=1.0, beta=2.0, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.alpha, self.beta = float(alpha), float(beta)

    def distill_term(self, logits_s, logits_t, labels):
        if labels.ndim == 2:  # mixup / cutmix soft labels: the target class is the argmax
            labels = ops.argmax(labels, -1)
        return dkd_loss(logits_s, logits_t, labels, self.alpha, self.beta, self.temperature)


class OFADistiller(Distiller):
    """OFA-KD: exit branches on chosen student stages, all pulled to the teacher's logits.

    total = w_gt * CE(z_s, y) + w_final * ofa(z_s, z_t, eps[-1]) + w_branch * sum_j ofa(branch_j(f_j), z_t, eps[j])

    ``loss_weights`` is ``(w_gt, w_final)``, ``branch_weight`` is ``w_branch``; ``eps`` holds one value (for
    every term) or one per stage (in ``stages``' sorted order) plus one for the final logits.
    """

    term_names = TERM_NAMES

    def __init__(self, student, teacher, num_classes, stages=(1, 2, 3, 4), eps=(1.0,), temperature=1.0,
                 loss_weights=(1.0, 1.0), branch_weight=1.0, label_smoothing=0.1, image_size=None, **unused):
        super().__init__()
        stages = tuple(sorted(int(s) for s in stages))
        eps = tuple(float(e) for e in eps)
        if len(eps) == 1:
            eps = eps * (len(stages) + 1)
        self.student = student
        self._set_teacher(teacher)
        self.stages = stages
        self.stage_index = tuple(s - 1 for s in stages)
        self.branch_eps = eps[:-1]
        self.final_eps = eps[-1]
        self.temperature = float(temperature)
        self.label_smoothing = float(label_smoothing)
        self.w_gt, self.w_final = float(loss_weights[0]), float(loss_weights[1])
        self.w_branch = float(branch_weight)
        size = student.image_size if image_size is None else int(image_size)
        shapes = student.stage_shapes(size)
        teacher_dim = int(teacher.feature_dim)
        self.branches = nn.CellList([
            build_branch(student, stage, shapes[stage - 1], teacher_dim, num_classes) for stage in stages
        ])

    def ofa_terms(self, images, labels, logits_t):
        """The weighted CE, final-logit OFA and exit-branch OFA terms, and the student's pooled feature (for
        a method that adds a feature term)."""
        logits_s, feats, feat_s = self.student.forward_with_stages(images)
        loss_gt = self.w_gt * cross_entropy(logits_s, labels, self.label_smoothing)
        loss_final = self.w_final * ofa_loss(logits_s, logits_t, labels, self.final_eps, self.temperature)
        loss_branches = ops.zeros((), ms.float32)
        for i in range(len(self.stage_index)):
            logits_b = self.branches[i](feats[self.stage_index[i]])
            loss_branches = loss_branches + ofa_loss(logits_b, logits_t, labels, self.branch_eps[i], self.temperature)
        return loss_gt, loss_final, self.w_branch * loss_branches, feat_s

    def construct(self, images, labels, *cached):
        loss_gt, loss_final, loss_branches, _ = self.ofa_terms(images, labels,
                                                               self.teacher_inputs(images, cached)[0])
        return loss_gt + loss_final + loss_branches, ops.stack((loss_gt, loss_final, loss_branches))


class RSDDistiller(Distiller):
    """RSD (Zhang et al., ICCV 2025): the projected pooled student feature decorrelated against the teacher's.

    total = w_gt * CE(z_s, y) + w_rsd * rsd(P(f_s), f_t), with f_s, f_t the pooled final features and P the
    projector (``branches[0]``). The loss standardises over the batch, so under data parallel it is computed
    on each device's own batch.
    """

    teacher_outputs = ("feature",)
    term_names = ("gt", "rsd")

    def __init__(self, student, teacher, num_classes=None, rsd_weight=0.1, rsd_kappa=0.01, rsd_gamma=2,
                 loss_weights=(1.0, 1.0), label_smoothing=0.1, **unused):
        super().__init__()
        self.student = student
        self._set_teacher(teacher)
        self.label_smoothing = float(label_smoothing)
        self.w_gt = float(loss_weights[0])
        self.w_rsd, self.kappa = float(rsd_weight), float(rsd_kappa)
        self.branches = nn.CellList([RSDProjector(student.feature_dim, teacher.feature_dim, rsd_gamma)])

    def construct(self, images, labels, *cached):
        feat_t = self.teacher_inputs(images, cached)[0]
        logits_s, _, feat_s = self.student.forward_with_stages(images)
        loss_gt = self.w_gt * cross_entropy(logits_s, labels, self.label_smoothing)
        loss_rsd = self.w_rsd * rsd_loss(self.branches[0](feat_s), feat_t, self.kappa)
        return loss_gt + loss_rsd, ops.stack((loss_gt, loss_rsd))


class OFARSDDistiller(OFADistiller):
    """OFA and RSD together: the OFA terms plus ``w_rsd * rsd(P(f_s), f_t)``; the projector is the last branch.

    The teacher runs once and gives both its logits (OFA) and its pooled feature (RSD).
    """

    teacher_outputs = ("logits", "feature")
    term_names = TERM_NAMES + ("rsd",)

    def __init__(self, student, teacher, num_classes, rsd_weight=0.1, rsd_kappa=0.01, rsd_gamma=2, **kwargs):
        super().__init__(student, teacher, num_classes, **kwargs)
        self.w_rsd, self.kappa = float(rsd_weight), float(rsd_kappa)
        self.projector_index = len(self.branches)
        self.branches.append(RSDProjector(student.feature_dim, teacher.feature_dim, rsd_gamma))

    def construct(self, images, labels, *cached):
        logits_t, feat_t = self.teacher_inputs(images, cached)
        loss_gt, loss_final, loss_branches, feat_s = self.ofa_terms(images, labels, logits_t)
        loss_rsd = self.w_rsd * rsd_loss(self.branches[self.projector_index](feat_s), feat_t, self.kappa)
        return (loss_gt + loss_final + loss_branches + loss_rsd,
                ops.stack((loss_gt, loss_final, loss_branches, loss_rsd)))


# the methods by name: the names and their classes are listed once, in the config's table of keys
DISTILLERS = {name: globals()[cls] for name, cls in METHODS.items()}


def build_distiller(name, student, teacher=None, num_classes=None, **kwargs):
    """Build a distiller by name; every check on its arguments happens here, before any graph compiles.

    ``teacher``: a model or a ``TeacherSource`` with one (run frozen in every step), or a ``TeacherSource``
    without a model (its outputs come with the batch: a teacher-output cache).
    """
    if name not in DISTILLERS:
        raise ValueError(f"unknown distiller '{name}'; choose one of: {', '.join(DISTILLERS)}")
    cls = DISTILLERS[name]
    student_classes = int(student.num_classes)
    if num_classes is None:
        num_classes = student_classes
    if student_classes != int(num_classes):
        raise ValueError(f"student '{type(student).__name__}' has {student_classes} classes, "
                         f"but num_classes is {num_classes}")
    if cls.needs_teacher:
        if teacher is None:
            raise ValueError(f"distiller '{name}' needs a teacher model")
        if int(teacher.num_classes) != int(num_classes):
            label = teacher.name if isinstance(teacher, TeacherSource) else type(teacher).__name__
            raise ValueError(f"teacher '{label}' has {teacher.num_classes} classes "
                             f"but the student has {num_classes}: they must predict the same classes")
        if isinstance(teacher, TeacherSource) and teacher.model is None:
            missing = [n for n in cls.teacher_outputs if n not in teacher.outputs]
            if missing:
                raise ValueError(f"distiller '{name}' needs the teacher's {', '.join(missing)}, which the teacher "
                                 f"cache does not hold (it has {', '.join(teacher.outputs)}); make it with --features")
    return cls(student, teacher, num_classes=int(num_classes), **kwargs)
