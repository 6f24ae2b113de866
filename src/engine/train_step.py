"""One fused training step: forward (teacher + student + branches + losses), backward, update.

The step takes every column of a batch: ``images, labels`` and, when the run trains from a teacher-output
cache, the cached teacher outputs (the distiller reads them instead of running a teacher). With an online
teacher the step runs the frozen teacher first, outside the function it differentiates, and hands its
outputs to the distiller as it would hand cached ones: the gradient graph holds the student, branches and
losses only.

Owns loss scaling (static, or dynamic with overflow skip), global-norm gradient clipping,
data-parallel gradient averaging and the EMA of the student. Everything compiles in GRAPH_MODE.
"""
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.communication.management import GlobalComm
from mindspore.context import ParallelMode
from mindspore.parallel._utils import _get_device_num, _get_gradients_mean, _get_parallel_mode

_ema_update = ops.MultitypeFuncGraph("ema_update")
_unscale = ops.MultitypeFuncGraph("unscale")
_zero_if_finite = ops.MultitypeFuncGraph("zero_if_finite")


@_zero_if_finite.register("Tensor")
def _zero_if_finite_one(grad):
    """0 when every entry of ``grad`` is finite, NaN otherwise (0 * inf and 0 * NaN are NaN)."""
    rows = grad.reshape(grad.shape[0], -1) if grad.ndim > 1 else grad.reshape(1, -1)
    # a zero row times the gradient: a BLAS product, 5x faster on CPU than amp.all_finite's IsFinite + ReduceAll
    return ops.matmul(ops.zeros((1, rows.shape[0]), rows.dtype), rows).sum().astype(ms.float32)


@_unscale.register("Tensor", "Tensor")
def _unscale_one(scale, grad):
    return grad / scale.astype(grad.dtype)


@_ema_update.register("Tensor", "Tensor", "Tensor")
def _ema_update_one(decay, ema, weight):
    return ops.assign(ema, ema * decay + weight.astype(ema.dtype) * (1.0 - decay))


class DistillTrainStep(nn.Cell):
    """``construct(images, labels, *cached) -> (loss, terms, overflow, scale)``.

    Args:
        distiller: a cell returning ``(loss, terms)`` (see ``src.distill.build_distiller``).
        optimizer: an optimizer over the student + branch parameters only.
        loss_scale_type: "none", "static" or "dynamic".
        loss_scale: the (initial) scale.
        scale_factor / scale_window: dynamic scaling: divide by ``scale_factor`` on overflow, multiply
            after ``scale_window`` overflow-free steps.
        clip_grad: global-norm clipping threshold (0 = off), applied to the unscaled gradients.
        ema_decay: decay of the student EMA (0 = no EMA).
    """

    def __init__(self, distiller, optimizer, loss_scale_type="none", loss_scale=1.0, scale_factor=2.0,
                 scale_window=1000, clip_grad=0.0, ema_decay=0.0):
        super().__init__(auto_prefix=False)
        if loss_scale_type not in ("none", "static", "dynamic"):
            raise ValueError(f"loss_scale_type must be none, static or dynamic, got {loss_scale_type!r}")
        self.network = distiller
        # an online teacher runs before the differentiated forward (its outputs enter as inputs)
        self.teacher_first = getattr(distiller, "teacher", None) is not None
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.dynamic = loss_scale_type == "dynamic"
        self.scaled = loss_scale_type != "none"
        scale = float(loss_scale) if self.scaled else 1.0
        self.scale_sense = Parameter(Tensor(scale, ms.float32), name="scale_sense", requires_grad=False)
        self.good_steps = Parameter(Tensor(0, ms.int32), name="good_steps", requires_grad=False)
        self.scale_factor = float(scale_factor)
        self.scale_window = int(scale_window)
        self.clip_grad = float(clip_grad)
        # The matmul trick relies on 0 * inf = NaN; Ascend may saturate inf in its matmul units, so there
        # (and on GPU) the framework's own overflow check is used.
        self.fast_finite_check = ms.get_context("device_target") == "CPU"
        self.hyper_map = ops.HyperMap()

        self.reducer = None
        parallel_mode = _get_parallel_mode()
        if parallel_mode in (ParallelMode.DATA_PARALLEL, ParallelMode.HYBRID_PARALLEL):
            self.reducer = nn.DistributedGradReducer(self.weights, _get_gradients_mean(), _get_device_num())
        self.use_reducer = self.reducer is not None
        self.all_reduce = ops.AllReduce(group=GlobalComm.WORLD_COMM_GROUP) if self.use_reducer else None

        self.ema = ema_decay > 0
        self.ema_decay = float(ema_decay)
        if self.ema:
            student_params = distiller.student.get_parameters()
            self.ema_source = ms.ParameterTuple(list(student_params))
            self.ema_weights = self.ema_source.clone(prefix="ema", init="same")
        else:
            self.ema_source = ms.ParameterTuple([])
            self.ema_weights = ms.ParameterTuple([])

    def construct(self, *inputs):
        if self.teacher_first:
            inputs = inputs + self.network.teacher.outputs(inputs[0])
        loss, terms = self.network(*inputs)
        scale = self.scale_sense
        sens = (ops.fill(loss.dtype, loss.shape, 1.0) * scale.astype(loss.dtype), ops.zeros_like(terms))
        grads = self.grad(self.network, self.weights)(*inputs, sens)
        if self.use_reducer:
            grads = self.reducer(grads)
        if self.scaled:
            grads = self.hyper_map(ops.partial(_unscale, scale), grads)
        if self.fast_finite_check:
            overflow = ops.addn(self.hyper_map(_zero_if_finite, grads)) != 0  # = not amp.all_finite(grads)
        else:
            overflow = ops.logical_not(ms.amp.all_finite(grads))
        if self.use_reducer:
            overflow = self.all_reduce(overflow.astype(ms.float32)) > 0
        if self.dynamic:
            self._adjust_scale(overflow)
        if self.clip_grad > 0:
            grads = ops.clip_by_global_norm(grads, self.clip_grad)
        if not overflow:
            loss = ops.depend(loss, self.optimizer(grads))
            if self.ema:
                loss = ops.depend(loss, self.hyper_map(ops.partial(_ema_update, Tensor(self.ema_decay, ms.float32)),
                                                       self.ema_weights, self.ema_source))
        return loss, terms, overflow, scale

    def _adjust_scale(self, overflow):
        if overflow:
            ops.assign(self.scale_sense, ops.maximum(self.scale_sense / self.scale_factor, 1.0))
            ops.assign(self.good_steps, 0)
        else:
            steps = self.good_steps + 1
            if steps >= self.scale_window:
                ops.assign(self.scale_sense, self.scale_sense * self.scale_factor)
                ops.assign(self.good_steps, 0)
            else:
                ops.assign(self.good_steps, steps)
        return overflow
