"""Build the pieces of a run from a resolved config: context, models, distiller, optimizer, step."""
import logging

import numpy as np

import mindspore as ms

from src.checkpoint import load_model_checkpoint
from src.device import resolve_device_target
from src.distill.distillers import build_distiller
from src.mindspore_process import launched_distributed
from src.models import create_model
from src.precision import resolve_precision

from .optim import create_optimizer, lr_schedule, param_groups
from .train_step import DistillTrainStep

log = logging.getLogger(__name__)


def setup_context(cfg, distributed=None):
    """Device, execution mode, seeds and (when launched so) data-parallel communication.

    ``cfg.device_target`` becomes the backend used (``auto`` resolved, see ``src.device``).
    Returns ``(rank, group_size)``.
    """
    if cfg.mode not in ("graph", "pynative"):
        raise ValueError(f"mode must be 'graph' or 'pynative', got {cfg.mode!r}")
    cfg.device_target = resolve_device_target(cfg.device_target)
    ms.set_context(mode=ms.GRAPH_MODE if cfg.mode == "graph" else ms.PYNATIVE_MODE)
    # The device can be chosen only before the runtime starts; a second run in the same process keeps it.
    if ms.get_context("device_target") != cfg.device_target:
        if hasattr(ms, "set_device"):
            ms.set_device(cfg.device_target)
        else:
            ms.set_context(device_target=cfg.device_target)
    rank, group_size = 0, 1
    if distributed is None:
        distributed = launched_distributed()
    if distributed:
        from mindspore.communication import get_group_size, get_rank, init

        init()
        rank, group_size = get_rank(), get_group_size()
        ms.reset_auto_parallel_context()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                     device_num=group_size)
    ms.set_seed(int(cfg.seed))
    np.random.seed(int(cfg.seed))
    return rank, group_size


def build_student(cfg):
    # Every model takes drop_path_rate (0 = off); CNNs without stochastic depth reject a non-zero rate.
    return create_model(cfg.student, num_classes=cfg.num_classes, image_size=cfg.image_size,
                        in_channels=cfg.in_channels, drop_path_rate=float(cfg.drop_path_rate))


def load_student_checkpoint(cfg, student, resuming=False):
    """Initialise ``student`` from ``cfg.student_ckpt`` (a MindSpore checkpoint: written by train.py, or timm /
    PyTorch weights converted by tools/convert_checkpoint.py). A ViT position embedding trained at another
    size is resampled as for teachers; missing or unexpected tensors are named in one line. A run that
    continues a resume state takes the student from there: ``student_ckpt`` is then skipped, with a log line.
    Returns True when the checkpoint was loaded."""
    if not cfg.student_ckpt:
        return False
    if resuming:
        log.info("student_ckpt %s not loaded: the run continues from its resume state, which holds the student "
                 "(resume wins over student_ckpt)", cfg.student_ckpt)
        return False
    load_model_checkpoint(student, cfg.student_ckpt, what=f"student '{cfg.student}'")
    log.info("student %s initialised from student_ckpt %s", cfg.student, cfg.student_ckpt)
    return True


def build_run_distiller(cfg, student, teacher):
    """The distiller of ``cfg`` over ``student`` and ``teacher`` (the run's ``TeacherSource``, or None)."""
    kwargs = dict(num_classes=cfg.num_classes, label_smoothing=cfg.label_smoothing,
                  loss_weights=tuple(cfg.loss_weights), temperature=cfg.temperature)
    if cfg.distiller in ("ofa", "ofa+rsd"):
        kwargs.update(stages=tuple(cfg.stages), eps=tuple(cfg.eps), branch_weight=cfg.ofa_branch_weight)
    if cfg.distiller in ("rsd", "ofa+rsd"):
        kwargs.update(rsd_weight=cfg.rsd_weight, rsd_kappa=cfg.rsd_kappa, rsd_gamma=cfg.rsd_gamma)
    if cfg.distiller == "dist":
        kwargs.update(beta=cfg.dist_beta, gamma=cfg.dist_gamma)
    elif cfg.distiller == "dkd":
        kwargs.update(alpha=cfg.dkd_alpha, beta=cfg.dkd_beta)
    return build_distiller(cfg.distiller, student, teacher, **kwargs)


def apply_amp(cfg, distiller):
    """Mixed precision on the student, branches and teacher (see ``precision``); the losses cast to
    float32 themselves. Returns the run's ``Precision``."""
    precision = resolve_precision(cfg)
    if precision.amp_level == "O0":
        return precision
    for name in ("student", "branches"):
        ms.amp.auto_mixed_precision(getattr(distiller, name), precision.amp_level)
    if distiller.teacher is not None:
        ms.amp.auto_mixed_precision(distiller.teacher.net, precision.amp_level)
    return precision


def build_train_step(cfg, distiller, steps_per_epoch):
    lrs = lr_schedule(cfg.scheduler, cfg.lr, cfg.min_lr, cfg.epochs, steps_per_epoch,
                      warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.warmup_lr,
                      decay_epochs=cfg.decay_epochs, decay_rate=cfg.decay_rate, per_epoch=cfg.lr_per_epoch)
    groups = param_groups(distiller, cfg.weight_decay)
    optimizer = create_optimizer(cfg.opt, groups, lrs, momentum=cfg.momentum, nesterov=cfg.nesterov)
    precision = resolve_precision(cfg)
    step = DistillTrainStep(distiller, optimizer, loss_scale_type=precision.loss_scale_type,
                            loss_scale=precision.loss_scale, scale_window=precision.scale_window,
                            clip_grad=cfg.clip_grad, ema_decay=cfg.ema_decay if cfg.ema else 0.0)
    return step, lrs
