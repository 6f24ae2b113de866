"""Model zoo: every model returns logits and, on request, its four stage features."""
from .registry import create_model, list_models, register_model
from .base import StageModel

# Importing the model files registers their constructors.
from . import cnn, convnext, vit, swin, mlp, beit, cyclemlp, small, mobilenetv1  # noqa: F401,E402

__all__ = ["create_model", "list_models", "register_model", "StageModel"]
