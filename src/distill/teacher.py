"""A frozen teacher: eval mode forever, no gradients, no trainable parameters."""
from mindspore import nn, ops


class FrozenTeacher(nn.Cell):
    """Wraps a teacher so that nothing an outer cell does can change it.

    ``set_train(True)`` on any ancestor reaches every child through ``add_flags_recursive``;
    this cell rewrites that flag to ``training=False`` so the teacher's BatchNorm keeps its
    statistics and its dropout / drop-path stay off.
    """

    def __init__(self, net):
        super().__init__()
        self.net = net
        for param in self.net.get_parameters():
            param.requires_grad = False
        self.net.set_train(False)

    def add_flags_recursive(self, **flags):
        if "training" in flags:
            flags["training"] = False
        return super().add_flags_recursive(**flags)

    def construct(self, x):
        return ops.stop_gradient(self.net(x))

    def logits_and_feature(self, x):
        """The teacher's logits and pooled final feature ``[B, D_t]`` from one forward, both without gradient."""
        logits, _, pooled = self.net.forward_with_stages(x)
        return ops.stop_gradient(logits), ops.stop_gradient(pooled)
