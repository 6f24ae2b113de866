"""Build the pieces of a run from a resolved config: context, models, distiller, optimizer, step."""
import logging
import os

import numpy as np

import mindspore as ms

from src.distill import build_distiller
from src.models import create_model

from .checkpoint import load_model_checkpoint
from .optim import create_optimizer, lr_schedule, param_groups
from .train_step import DistillTrainStep

log = logging.getLogger(__name__)


def launched_distributed():
    """True when started by msrun / mpirun / a rank table with more than one worker."""
    for key in ("MS_WORKER_NUM", "RANK_SIZE", "OMPI_COMM_WORLD_SIZE"):
        if int(os.environ.get(key, "1") or 1) > 1:
            return True
    return False


def setup_context(cfg, distributed=None):
    """Device, execution mode, seeds and (when launched so) data-parallel communication.

    Returns ``(rank, group_size)``.
    """
    if cfg.mode not in ("graph", "pynative"):
        raise ValueError(f"mode must be 'graph' or 'pynative', got {cfg.mode!r}")
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


def build_teacher(cfg, load=True):
    """The teacher with its checkpoint loaded (required: a random teacher teaches nothing)."""
    if not cfg.teacher:
        raise ValueError(f"distiller '{cfg.distiller}' needs a teacher: set the 'teacher' key")
    teacher = create_model(cfg.teacher, num_classes=cfg.num_classes, image_size=cfg.image_size,
                           in_channels=cfg.in_channels)
    if load:
        if not cfg.teacher_ckpt:
            raise ValueError(f"distiller '{cfg.distiller}' needs trained teacher weights: set 'teacher_ckpt' "
                             f"to a MindSpore checkpoint of '{cfg.teacher}' (see tools/convert_checkpoint.py)")
        load_model_checkpoint(teacher, cfg.teacher_ckpt, what=f"teacher '{cfg.teacher}'")
    return teacher


def build_run_distiller(cfg, student, teacher):
    kwargs = dict(num_classes=cfg.num_classes, label_smoothing=cfg.label_smoothing,
                  loss_weights=tuple(cfg.loss_weights), temperature=cfg.temperature)
    if cfg.distiller == "ofa":
        kwargs.update(stages=tuple(cfg.stages), eps=tuple(cfg.eps))
    elif cfg.distiller == "dist":
        kwargs.update(beta=cfg.dist_beta, gamma=cfg.dist_gamma, tau=cfg.temperature)
    elif cfg.distiller == "dkd":
        kwargs.update(alpha=cfg.dkd_alpha, beta=cfg.dkd_beta)
    return build_distiller(cfg.distiller, student, teacher, **kwargs)


def apply_amp(cfg, distiller):
    """Mixed precision on the student, branches and teacher; the losses cast to float32 themselves."""
    if cfg.amp_level in ("O0", None, ""):
        return
    if cfg.amp_level not in ("O1", "O2", "O3"):
        raise ValueError(f"amp_level must be O0, O1, O2 or O3, got {cfg.amp_level!r}")
    for name in ("student", "branches"):
        ms.amp.auto_mixed_precision(getattr(distiller, name), cfg.amp_level)
    if distiller.teacher is not None:
        ms.amp.auto_mixed_precision(distiller.teacher.net, cfg.amp_level)


def build_train_step(cfg, distiller, steps_per_epoch):
    lrs = lr_schedule(cfg.scheduler, cfg.lr, cfg.min_lr, cfg.epochs, steps_per_epoch,
                      warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.warmup_lr,
                      decay_epochs=cfg.decay_epochs, decay_rate=cfg.decay_rate)
    groups = param_groups(distiller, cfg.weight_decay)
    optimizer = create_optimizer(cfg.opt, groups, lrs, momentum=cfg.momentum, nesterov=cfg.nesterov)
    step = DistillTrainStep(distiller, optimizer, loss_scale_type=cfg.loss_scale_type, loss_scale=cfg.loss_scale,
                            clip_grad=cfg.clip_grad, ema_decay=cfg.ema_decay if cfg.ema else 0.0)
    return step, lrs
