"""Training machinery: optimizer parameter groups, the fused train step, EMA."""
from .train_step import DistillTrainStep
from .optim import create_optimizer, lr_schedule, param_groups

__all__ = ["DistillTrainStep", "create_optimizer", "lr_schedule", "param_groups"]
