"""Distillation: losses, exit branches, distillers by name."""
from .losses import cross_entropy, dist_loss, dkd_loss, kd_loss, ofa_loss
from .branches import ConvBranch, TokenBranch, build_branch
from .distillers import DISTILLERS, TERM_NAMES, build_distiller

__all__ = ["ofa_loss", "kd_loss", "dist_loss", "dkd_loss", "cross_entropy", "ConvBranch", "TokenBranch",
           "build_branch", "build_distiller", "DISTILLERS", "TERM_NAMES"]
