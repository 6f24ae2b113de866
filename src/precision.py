"""Mixed precision per device: the amp level and loss scaling a run uses.

``amp_level: auto`` and ``loss_scale_type: auto`` (the defaults) give the recipe of the reference
PyTorch code's ``--amp`` switch (native AMP: ``torch.cuda.amp.autocast`` + ``GradScaler``) on
accelerators, and plain float32 on CPU:

* CPU: O0 (float32), no loss scaling. CPUs gain nothing from float16 here and lose accuracy.
* GPU and Ascend: O1, MindSpore's counterpart of autocast (convolutions and matrix products in
  float16, reductions, norms and softmax in float32; our losses cast to float32 themselves), with a
  dynamic loss scale that starts at 2**16, halves on an overflowing step (the update is skipped) and
  doubles after 2000 overflow-free steps: GradScaler's defaults.

Any explicit ``amp_level`` / ``loss_scale_type`` wins over ``auto``.
"""
from dataclasses import dataclass

ACCELERATOR_AMP_LEVEL = "O1"


@dataclass(frozen=True)
class Precision:
    amp_level: str          # O0 (float32) .. O3
    loss_scale_type: str    # none | static | dynamic
    loss_scale: float       # the static scale, or the dynamic one's start
    scale_window: int       # dynamic: overflow-free steps before the scale doubles

    def describe(self):
        if self.amp_level == "O0" and self.loss_scale_type == "none":
            return "float32 (amp_level O0), no loss scaling"
        scaling = {"none": "no loss scaling", "static": f"static loss scale {self.loss_scale:g}",
                   "dynamic": f"dynamic loss scale from {self.loss_scale:g} (x2 after {self.scale_window} "
                              f"overflow-free steps, /2 and the step skipped on overflow)"}[self.loss_scale_type]
        return f"mixed precision amp_level {self.amp_level}, {scaling}"


def resolve_precision(cfg):
    """The ``Precision`` of a run from its config (``auto`` resolved by ``device_target``)."""
    level = cfg["amp_level"]
    if level == "auto":
        device = cfg["device_target"]
        if device == "auto":  # a run resolves it in setup_context; here for a config read on its own
            from .device import resolve_device_target

            device = resolve_device_target(device)
        level = "O0" if device == "CPU" else ACCELERATOR_AMP_LEVEL
    scale_type = cfg["loss_scale_type"]
    if scale_type == "auto":
        scale_type = "none" if level == "O0" else "dynamic"
    return Precision(level, scale_type, float(cfg["loss_scale"]), int(cfg["loss_scale_window"]))
