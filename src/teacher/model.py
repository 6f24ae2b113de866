"""The teacher network of a config, built and loaded from ``teacher_ckpt``: what an online run, eval.py and
the cache writer run."""
import numpy as np

from src.checkpoint import load_model_checkpoint
from src.models import create_model


def build_teacher_model(cfg, load=True):
    """The teacher network of ``cfg``, whatever ``teacher_cache`` says.

    ``load`` loads ``teacher_ckpt`` (required then: a random teacher teaches nothing).
    """
    if not cfg.teacher:
        raise ValueError(f"distiller '{cfg.distiller}' needs a teacher: set the 'teacher' key (or distiller=none "
                         f"to train the student alone)")
    # The random init is replaced by the checkpoint; drawing it must not move the global RNG, so that an online
    # run and a run from a teacher-output cache (no teacher) initialise student and branches alike.
    rng_state = np.random.get_state()
    teacher = create_model(cfg.teacher, num_classes=cfg.num_classes, image_size=cfg.image_size,
                           in_channels=cfg.in_channels)
    np.random.set_state(rng_state)
    if load:
        if not cfg.teacher_ckpt:
            raise ValueError(f"distiller '{cfg.distiller}' needs trained teacher weights: set 'teacher_ckpt' to a "
                             f"MindSpore checkpoint of '{cfg.teacher}'; train one with distiller=none "
                             f"student={cfg.teacher}, or convert a timm / PyTorch one with "
                             f"tools/convert_checkpoint.py")
        load_model_checkpoint(teacher, cfg.teacher_ckpt, what=f"teacher '{cfg.teacher}'")
    return teacher
