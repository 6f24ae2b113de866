"""Name -> constructor registry for students and teachers."""
from .base import check_in_channels

_MODELS = {}


def register_model(fn):
    """Decorator: register ``fn(num_classes, image_size, in_channels=3, **kwargs) -> StageModel`` under its name."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model '{name}' is registered twice")
    _MODELS[name] = fn
    return fn


def list_models():
    return sorted(_MODELS)


def create_model(name, num_classes=1000, image_size=224, in_channels=3, **kwargs):
    """Build a registered model with random init for ``in_channels`` (1 = grayscale, 3 = RGB) input images.

    Raises ValueError naming the model and the known names when ``name`` is unknown.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return _MODELS[name](num_classes=int(num_classes), image_size=int(image_size),
                         in_channels=check_in_channels(in_channels), **kwargs)
