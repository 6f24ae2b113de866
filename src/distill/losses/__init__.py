"""Distillation losses as pure functions of logits or features (usable inside a GRAPH_MODE construct)."""
from .ce import cross_entropy
from .dist import dist_loss
from .dkd import dkd_loss
from .kd import kd_loss
from .ofa import ofa_loss
from .rsd import rsd_loss

__all__ = ["cross_entropy", "dist_loss", "dkd_loss", "kd_loss", "ofa_loss", "rsd_loss"]
