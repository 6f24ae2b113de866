"""Keep a train step's results on the device between log points.

``StepStats`` wraps the fused train step. After every step it adds the loss, the loss terms and the
overflow flag to running sums held in one device-side vector, and remembers the first step whose loss
(or, without dynamic loss scaling, whose gradients) was not finite, with that step's values. Nothing
goes back to the host per step: the loop reads the vector (one read) every ``log_interval`` steps, at
save points and at the end of an epoch, then resets it. An accelerator can therefore queue step n+1
while step n runs.

A non-finite step skips its own update on the device (``DistillTrainStep`` updates only when every
gradient is finite); the loop learns of it at the next read and stops there, before saving anything.
"""
from dataclasses import dataclass

import numpy as np

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops


@dataclass(frozen=True)
class StatsLayout:
    """Where each value sits in the state vector (``num_terms`` loss terms)."""

    num_terms: int

    @property
    def size(self):
        return 9 + 2 * self.num_terms

    def initial(self):
        return np.zeros(self.size, dtype=np.float32)

    def unpack(self, values, term_names):
        n = self.num_terms
        values = np.asarray(values, dtype=np.float64)
        steps = int(values[0])
        out = {
            "steps": steps,
            "loss_sum": float(values[1]),
            "term_sums": dict(zip(term_names, values[2:2 + n].tolist())),
            "overflows": int(values[2 + n]),
            "scale": float(values[7 + 2 * n]),
            "optimizer_step": int(values[8 + 2 * n]),
            "bad": None,
        }
        if values[3 + n] > 0:  # the first non-finite step since the last read (1-based)
            out["bad"] = {"index": int(values[3 + n]), "loss": float(values[4 + n]),
                          "terms": dict(zip(term_names, values[5 + n:5 + 2 * n].tolist())),
                          "overflow": bool(values[5 + 2 * n]), "lr_index": int(values[6 + 2 * n])}
        return out


class StepStats(nn.Cell):
    """``construct(*columns)`` runs ``step(*columns)`` and folds its results into ``state`` on the device.

    Args:
        step: the train step, returning ``(loss, terms, overflow, scale)`` and owning ``optimizer``.
        term_names: the distiller's loss-term names (one entry of ``terms`` each).
        stop_on_overflow: count a step with non-finite gradients as fatal (True without dynamic loss
            scaling, where such a step is divergence, not a scale to lower).
    """

    def __init__(self, step, term_names, stop_on_overflow=True):
        super().__init__(auto_prefix=False)
        self.step = step
        self.term_names = tuple(term_names)
        self.layout = StatsLayout(len(self.term_names))
        self.stop_on_overflow = bool(stop_on_overflow)
        self.state = Parameter(Tensor(self.layout.initial()), name="step_stats.state", requires_grad=False)

    def construct(self, *columns):
        loss, terms, overflow, scale = self.step(*columns)
        n = self.layout.num_terms
        state = self.state
        loss = loss.astype(ms.float32).reshape(1)
        terms = terms.astype(ms.float32).reshape(n)
        overflow_f = overflow.astype(ms.float32).reshape(1)
        # the optimizer counts its updates; skipped (overflowing) steps do not advance it or the lr index
        optimizer_step = self.step.optimizer.global_step.astype(ms.float32).reshape(1)
        count = state[0:1] + 1.0
        bad = ops.logical_not(ops.isfinite(loss))
        if self.stop_on_overflow:
            bad = ops.logical_or(bad, overflow.reshape(1))
        first = ops.logical_and(bad, state[3 + n:4 + n] == 0.0)
        first_terms = ops.broadcast_to(first, (n,))
        new_state = ops.concat((
            count,
            state[1:2] + loss,
            state[2:2 + n] + terms,
            state[2 + n:3 + n] + overflow_f,
            ops.select(first, count, state[3 + n:4 + n]),
            ops.select(first, loss, state[4 + n:5 + n]),
            ops.select(first_terms, terms, state[5 + n:5 + 2 * n]),
            ops.select(first, overflow_f, state[5 + 2 * n:6 + 2 * n]),
            ops.select(first, optimizer_step, state[6 + 2 * n:7 + 2 * n]),
            scale.astype(ms.float32).reshape(1),
            optimizer_step,
        ))
        return ops.depend(loss, ops.assign(self.state, new_state))

    def read(self):
        """The sums since the last read (one device-to-host copy), then start new sums."""
        values = self.state.asnumpy()
        self.state.set_data(Tensor(self.layout.initial()))
        return self.layout.unpack(values, self.term_names)
