"""The teacher model as a distiller and the cache writer run it: frozen, in its inference form (BatchNorm folded)."""
from mindspore import nn, ops

from src.models.fold_bn import fold_batchnorm

# what a teacher can hand a distiller: its logits, and its pooled final feature (forward_with_stages(x)[2])
TEACHER_OUTPUTS = ("logits", "feature")


def check_output_names(names):
    names = tuple(names)
    unknown = [n for n in names if n not in TEACHER_OUTPUTS]
    if unknown:
        raise ValueError(f"unknown teacher output(s) {unknown}; a teacher gives {', '.join(TEACHER_OUTPUTS)}")
    return names


class FrozenTeacher(nn.Cell):
    """Wraps a teacher so that nothing an outer cell does can change it, in its inference form.

    With ``fold_bn`` (the default) every BatchNorm that follows a convolution is folded into it, in place
    (``src.models.fold_bn``): the teacher graph has no BatchNorm, no state it could update and nothing
    that requires a gradient. Wrap the teacher after its checkpoint is loaded; the checkpoint file stays
    the unfolded network's. ``fold_report`` says what was folded (None without ``fold_bn``).

    ``set_train(True)`` on any ancestor reaches every child through ``add_flags_recursive``;
    this cell rewrites that flag to ``training=False`` so any BatchNorm left keeps its statistics
    and dropout / drop-path stay off.

    ``construct(x)`` returns the logits; ``outputs(x)`` the outputs named in ``outputs`` (a tuple).
    """

    def __init__(self, net, outputs=("logits",), fold_bn=True):
        super().__init__()
        self.net = net
        self.output_names = check_output_names(outputs)
        self.with_feature = "feature" in self.output_names
        self.fold_report = fold_batchnorm(net) if fold_bn else None
        for param in self.net.get_parameters():
            param.requires_grad = False
        self.net.set_train(False)

    def add_flags_recursive(self, **flags):
        if "training" in flags:
            flags["training"] = False
        return super().add_flags_recursive(**flags)

    def construct(self, x):
        return ops.stop_gradient(self.net(x))

    def outputs(self, x):
        """The teacher's outputs named in ``output_names``, in that order, without gradient."""
        if not self.with_feature:
            return (ops.stop_gradient(self.net(x)),)
        logits, _, pooled = self.net.forward_with_stages(x)
        out = ()
        for name in self.output_names:
            if name == "logits":
                out = out + (ops.stop_gradient(logits),)
            else:
                out = out + (ops.stop_gradient(pooled),)
        return out
