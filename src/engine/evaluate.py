"""Top-1 / top-5 accuracy and cross-entropy of a classifier over a dataset."""
import numpy as np

import mindspore as ms
from mindspore import nn


class _Logits(nn.Cell):
    """Compiled forward used for evaluation (eval mode, float32 logits)."""

    def __init__(self, net):
        super().__init__(auto_prefix=False)  # keep the wrapped model's parameter names as they are
        self.net = net

    def construct(self, x):
        return self.net(x).astype(ms.float32)


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def evaluate(net, dataset):
    """Exact metrics over every sample of ``dataset`` (columns: image, label).

    Padding samples (label < 0, used to fill the last batch so one graph shape serves all) are ignored.

    Returns ``{"top1", "top5", "loss", "num_samples"}`` with accuracies in percent.
    """
    runner = _Logits(net)
    runner.set_train(False)
    correct1 = correct5 = 0
    loss_sum = 0.0
    count = 0
    for batch in dataset.create_tuple_iterator(num_epochs=1, output_numpy=False):
        images, labels = batch[0], batch[1].asnumpy()
        if labels.ndim == 2:
            labels = labels.argmax(-1)
        valid = labels >= 0
        logits = runner(images).asnumpy()[valid]
        labels = labels[valid].astype(np.int64)
        k = min(5, logits.shape[1])
        top = np.argsort(-logits, axis=1)[:, :k]
        correct1 += int((top[:, 0] == labels).sum())
        correct5 += int((top == labels[:, None]).any(axis=1).sum())
        loss_sum += float(-_log_softmax(logits.astype(np.float64))[np.arange(len(labels)), labels].sum())
        count += len(labels)
    if count == 0:
        raise ValueError("the evaluation split is empty")
    return {"top1": 100.0 * correct1 / count, "top5": 100.0 * correct5 / count, "loss": loss_sum / count,
            "num_samples": count}
