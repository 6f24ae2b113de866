"""Distillers: a student, a frozen teacher and the loss terms of one method, fused in one Cell.

``construct(images, labels, *cached)`` returns ``(total_loss, terms)`` where ``terms`` is a float32
tensor of the weighted loss terms, one per name in the distiller's ``term_names`` (e.g.
``("gt", "kd", "ofa")`` for OFA), so a training step can log every term without a second forward.
Every trainable cell besides the student (OFA exit branches, the RSD projector) sits in ``branches``:
the optimizer, mixed precision and resume states take them from there, and none of them is exported.

The teacher's outputs a method uses are named in ``teacher_outputs`` ("logits", "feature"). Built with a
model as teacher, the distiller runs it (frozen) and ignores ``cached``; built with a ``CachedTeacher``
(a teacher-output cache), no teacher exists and ``cached`` are those outputs, one batch column each.
"""
import math

import mindspore as ms
from mindspore import nn, ops

from .branches import build_branch
from .losses import cross_entropy, dist_loss, dkd_loss, kd_loss, ofa_loss, rsd_loss
from .projector import RSDProjector
from .teacher import CachedTeacher, FrozenTeacher

TERM_NAMES = ("gt", "kd", "ofa")  # the terms of OFA, the fullest of the logit methods


def _check_weights(loss_weights):
    weights = tuple(float(w) for w in loss_weights)
    if len(weights) != 3 or not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"loss_weights must be three non-negative numbers (gt, kd, ofa), got {loss_weights!r}")
    return weights


class Distiller(nn.Cell):
    """Base of the distillers: where the teacher's outputs come from."""

    needs_teacher = True
    teacher_outputs = ("logits",)

    def _set_teacher(self, teacher):
        self.from_cache = isinstance(teacher, CachedTeacher)
        self.teacher = FrozenTeacher(teacher, self.teacher_outputs) if teacher is not None and not self.from_cache \
            else None

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

    def __init__(self, student, teacher=None, num_classes=None, label_smoothing=0.1,
                 loss_weights=(1.0, 1.0, 1.0), **unused):
        super().__init__()
        self.student = student
        self._set_teacher(None)
        self.label_smoothing = float(label_smoothing)
        self.w_gt = _check_weights(loss_weights)[0]
        self.branches = nn.CellList()

    def construct(self, images, labels, *cached):
        logits = self.student(images)
        loss_gt = self.w_gt * cross_entropy(logits, labels, self.label_smoothing)
        return loss_gt, ops.stack((loss_gt,))


class LogitDistiller(Distiller):
    """Base of the logit-only methods: ``gt`` term plus one ``kd`` term from ``distill_term``."""

    term_names = ("gt", "kd")

    def __init__(self, student, teacher, num_classes=None, label_smoothing=0.1,
                 loss_weights=(1.0, 1.0, 1.0), temperature=1.0, **unused):
        super().__init__()
        self.student = student
        self._set_teacher(teacher)
        self.label_smoothing = float(label_smoothing)
        self.w_gt, self.w_kd, _ = _check_weights(loss_weights)
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
    """DIST: inter- and intra-class Pearson relations of the predictions."""

    def __init__(self, student, teacher, beta=1.0, gamma=1.0, tau=1.0, **kwargs):
        super().__init__(student, teacher, **kwargs)
        self.beta, self.gamma, self.tau = float(beta), float(gamma), float(tau)

    def distill_term(self, logits_s, logits_t, labels):
        return dist_loss(logits_s, logits_t, self.beta, self.gamma, self.tau)


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

    total = w_gt * CE(z_s, y) + w_kd * ofa(z_s, z_t, eps[-1]) + w_ofa * sum_j ofa(branch_j(f_j), z_t, eps[j])
    """

    term_names = TERM_NAMES

    def __init__(self, student, teacher, num_classes, stages=(1, 2, 3, 4), eps=(1.0,), temperature=1.0,
                 loss_weights=(1.0, 1.0, 1.0), label_smoothing=0.1, image_size=None, **unused):
        super().__init__()
        stages = tuple(int(s) for s in stages)
        if not stages or any(s not in (1, 2, 3, 4) for s in stages) or len(set(stages)) != len(stages):
            raise ValueError(f"stages must be distinct values in 1..4, got {list(stages)}")
        stages = tuple(sorted(stages))
        eps = tuple(float(e) for e in eps)
        if len(eps) == 1:
            eps = eps * (len(stages) + 1)
        if len(eps) != len(stages) + 1:
            raise ValueError(f"eps must have 1 or len(stages)+1 = {len(stages) + 1} entries "
                             f"(one per stage, the last for the final logits), got {len(eps)}: {list(eps)}")
        if any(not math.isfinite(e) or e <= 0 for e in eps):
            raise ValueError(f"eps entries must be positive, got {list(eps)}")
        if float(temperature) <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.student = student
        self._set_teacher(teacher)
        self.stages = stages
        self.stage_index = tuple(s - 1 for s in stages)
        self.branch_eps = eps[:-1]
        self.final_eps = eps[-1]
        self.temperature = float(temperature)
        self.label_smoothing = float(label_smoothing)
        self.w_gt, self.w_kd, self.w_ofa = _check_weights(loss_weights)
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
        loss_kd = self.w_kd * ofa_loss(logits_s, logits_t, labels, self.final_eps, self.temperature)
        loss_ofa = ops.zeros((), ms.float32)
        for i in range(len(self.stage_index)):
            logits_b = self.branches[i](feats[self.stage_index[i]])
            loss_ofa = loss_ofa + ofa_loss(logits_b, logits_t, labels, self.branch_eps[i], self.temperature)
        return loss_gt, loss_kd, self.w_ofa * loss_ofa, feat_s

    def construct(self, images, labels, *cached):
        loss_gt, loss_kd, loss_ofa, _ = self.ofa_terms(images, labels, self.teacher_inputs(images, cached)[0])
        return loss_gt + loss_kd + loss_ofa, ops.stack((loss_gt, loss_kd, loss_ofa))


def _check_rsd(weight, kappa):
    weight, kappa = float(weight), float(kappa)
    if not (math.isfinite(weight) and weight >= 0):
        raise ValueError(f"rsd_weight must be a finite number >= 0, got {weight}")
    if not (math.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"rsd_kappa must be a finite number >= 0, got {kappa}")
    return weight, kappa


class RSDDistiller(Distiller):
    """RSD (Zhang et al., ICCV 2025): the projected pooled student feature decorrelated against the teacher's.

    total = w_gt * CE(z_s, y) + w_rsd * rsd(P(f_s), f_t), with f_s, f_t the pooled final features and P the
    projector (``branches[0]``). The loss standardises over the batch, so under data parallel it is computed
    on each device's own batch.
    """

    teacher_outputs = ("feature",)
    term_names = ("gt", "rsd")

    def __init__(self, student, teacher, num_classes=None, rsd_weight=0.1, rsd_kappa=0.01, rsd_gamma=2,
                 loss_weights=(1.0, 1.0, 1.0), label_smoothing=0.1, **unused):
        super().__init__()
        self.student = student
        self._set_teacher(teacher)
        self.label_smoothing = float(label_smoothing)
        self.w_gt = _check_weights(loss_weights)[0]
        self.w_rsd, self.kappa = _check_rsd(rsd_weight, rsd_kappa)
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
    term_names = ("gt", "kd", "ofa", "rsd")

    def __init__(self, student, teacher, num_classes, rsd_weight=0.1, rsd_kappa=0.01, rsd_gamma=2, **kwargs):
        super().__init__(student, teacher, num_classes, **kwargs)
        self.w_rsd, self.kappa = _check_rsd(rsd_weight, rsd_kappa)
        self.projector_index = len(self.branches)
        self.branches.append(RSDProjector(student.feature_dim, teacher.feature_dim, rsd_gamma))

    def construct(self, images, labels, *cached):
        logits_t, feat_t = self.teacher_inputs(images, cached)
        loss_gt, loss_kd, loss_ofa, feat_s = self.ofa_terms(images, labels, logits_t)
        loss_rsd = self.w_rsd * rsd_loss(self.branches[self.projector_index](feat_s), feat_t, self.kappa)
        return loss_gt + loss_kd + loss_ofa + loss_rsd, ops.stack((loss_gt, loss_kd, loss_ofa, loss_rsd))


DISTILLERS = {
    "none": StudentOnly,
    "kd": KDDistiller,
    "dist": DISTDistiller,
    "dkd": DKDDistiller,
    "ofa": OFADistiller,
    "rsd": RSDDistiller,
    "ofa+rsd": OFARSDDistiller,
}


def build_distiller(name, student, teacher=None, num_classes=None, **kwargs):
    """Build a distiller by name; every check on its arguments happens here, before any graph compiles.

    ``teacher``: a model (run frozen in every step), or a ``CachedTeacher`` (its outputs come with the batch).
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
            raise ValueError(f"teacher '{type(teacher).__name__}' has {teacher.num_classes} classes "
                             f"but the student has {num_classes}: they must predict the same classes")
        if isinstance(teacher, CachedTeacher):
            missing = [n for n in cls.teacher_outputs if n not in teacher.outputs]
            if missing:
                raise ValueError(f"distiller '{name}' needs the teacher's {', '.join(missing)}, which the teacher "
                                 f"cache does not hold (it has {', '.join(teacher.outputs)}); make it with --features")
    return cls(student, teacher, num_classes=int(num_classes), **kwargs)
