"""Top-1 / top-5 accuracy and cross-entropy of a classifier over a dataset, summed on the device.

An ``Evaluator`` compiles one graph for its network (logits -> top-k hits and the summed loss of the
batch, added to four device-side sums) and reuses it for every evaluation of the run: loading other
weights into the network (the EMA, a new epoch's student) changes values, not the graph. The host
reads the four sums once per evaluation.
"""
import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops


class EvaluationStopped(Exception):
    """Raised when ``should_stop`` asked to stop in the middle of an evaluation."""


class _EvalSums(nn.Cell):
    """``construct(images, labels)`` adds (top-1 hits, top-k hits, loss sum, count) of a batch to ``sums``.

    Labels < 0 are padding (they fill the last batch so one graph shape serves all) and count nowhere.
    """

    def __init__(self, net, k):
        super().__init__(auto_prefix=False)  # keep the wrapped model's parameter names as they are
        self.net = net
        self.k = int(k)
        self.sums = Parameter(Tensor(np.zeros(4, np.float32)), name="evaluate.sums", requires_grad=False)

    def construct(self, images, labels):
        logits = self.net(images).astype(ms.float32)
        labels = labels.astype(ms.int32)
        valid = labels >= 0
        target = ops.select(valid, labels, ops.zeros_like(labels)).reshape(-1, 1)
        _, top = ops.topk(logits, self.k)
        hits = top == target
        top1 = ops.logical_and(hits[:, 0], valid).astype(ms.float32)
        topk = ops.logical_and(hits.any(axis=1), valid).astype(ms.float32)
        nll = -ops.gather_elements(ops.log_softmax(logits, axis=1), 1, target).reshape(-1)
        nll = ops.select(valid, nll, ops.zeros_like(nll))
        batch = ops.stack((top1.sum(), topk.sum(), nll.sum(), valid.astype(ms.float32).sum()))
        return ops.depend(batch, ops.assign_add(self.sums, batch))


class Evaluator:
    """Exact metrics of ``net`` over every sample of a dataset (columns: image, label, ...).

    ``Evaluator(net)(dataset)`` returns ``{"top1", "top5", "loss", "num_samples"}``, accuracies in percent.
    """

    def __init__(self, net, num_classes=None):
        classes = num_classes or getattr(net, "num_classes", None) or 5
        self.cell = _EvalSums(net, min(5, int(classes)))
        self.cell.set_train(False)

    def __call__(self, dataset, should_stop=None):
        self.cell.sums.set_data(Tensor(np.zeros(4, np.float32)))
        for batch in dataset.create_tuple_iterator(num_epochs=1, output_numpy=False):
            self.cell(batch[0], batch[1])
            if should_stop is not None and should_stop():
                raise EvaluationStopped()
        correct1, correct5, loss_sum, count = self.cell.sums.asnumpy().astype(np.float64).tolist()
        if count == 0:
            raise ValueError("the evaluation split is empty")
        return {"top1": 100.0 * correct1 / count, "top5": 100.0 * correct5 / count, "loss": loss_sum / count,
                "num_samples": int(round(count))}

    def compiled_graphs(self):
        """How many graphs the evaluation compiled (GRAPH_MODE): 1 for a whole run."""
        return len(self.cell.compile_cache)


def evaluate(net, dataset):
    """Metrics of ``net`` over ``dataset`` (see ``Evaluator``)."""
    return Evaluator(net)(dataset)
