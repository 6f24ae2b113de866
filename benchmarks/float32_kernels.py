"""How exact the float32 kernels under our losses are, against float64, beside PyTorch's float32 kernels.

    python -m benchmarks.float32_kernels --json results/equivalence/float32_kernels.json

On seeded random logits (batches of 8 rows of 10 classes, at a few scales) it measures, against NumPy in float64 on the
same float32 inputs: the largest relative error of ``exp``, the largest absolute error of ``log_softmax``,
the error of ``log_softmax`` on a row of zeros (MindSpore's in float32 and float64), and the relative
error (median and largest over the batches) of the loss values our training computes (cross-entropy with label
smoothing 0.1 and KD at T = 1, ``src/distill/losses``), for MindSpore's CPU kernels and for PyTorch's.
The equivalence harness (docs/equivalence.md) finds our first-step KD term further from the float64 twin
than PyTorch's float32 run is; this separates the loss kernels from the models: here both sides get the
very same logits. Needs PyTorch (test / benchmark only). The last line printed is
``kd_rel_err_median_ours=<float> kd_rel_err_median_torch32=<float>`` (logits of std 0.5).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  first: caps oneDNN at AVX2 before MindSpore loads

import numpy as np  # noqa: E402

from benchmarks.report import run_and_report  # noqa: E402
from src.flags import OneLineParser  # noqa: E402

SCALES = (0.05, 0.5, 3.0)  # logit standard deviations: a random network's are 0.05 to 0.5
SMOOTHING = 0.1


def build_arg_parser():
    p = OneLineParser(prog="python -m benchmarks.float32_kernels",
                      description="float32 exp / log_softmax and the CE / KD losses of MindSpore CPU and PyTorch "
                                  "against float64 on the same logits")
    p.add_argument("--batches", type=int, default=100, help="batches of logits per scale")
    p.add_argument("--batch-size", type=int, default=8, help="rows per batch (the harness's batch is 8)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results here")
    return p


def log_softmax64(z):
    z = np.asarray(z, np.float64)
    shifted = z - z.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def losses64(z_s, z_t, labels, classes):
    """Float64 cross-entropy with label smoothing and KD (T = 1), the values the float32 ones aim at."""
    lp_s, lp_t = log_softmax64(z_s), log_softmax64(z_t)
    target = np.eye(classes)[labels] * (1 - SMOOTHING) + SMOOTHING / classes
    return float(-(target * lp_s).sum(-1).mean()), float((np.exp(lp_t) * (lp_t - lp_s)).sum(-1).mean())


def rel(a, b):
    return abs(float(a) - b) / abs(b)


def run(args):
    try:
        import torch
    except ImportError:
        raise ValueError("the float32 kernel check needs PyTorch (test-only): pip install torch==2.13.0") from None
    import mindspore as ms
    from mindspore import ops

    from src.distill.losses.ce import cross_entropy
    from src.distill.losses.kd import kd_loss

    if args.batches < 1 or args.batch_size < 1 or args.classes < 2:
        raise ValueError(f"--batches and --batch-size must be >= 1 and --classes >= 2, got {args.batches}, "
                         f"{args.batch_size} and {args.classes}")
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    torch.set_num_threads(1)
    F = torch.nn.functional
    rng = np.random.RandomState(args.seed)
    rows = []
    for scale in SCALES:
        errs = {"exp": ([], []), "lsm": ([], []), "ce": ([], []), "kd": ([], [])}
        for _ in range(args.batches):
            shape = (args.batch_size, args.classes)
            z_s = (rng.standard_normal(shape) * scale).astype(np.float32)
            z_t = (rng.standard_normal(shape) * scale).astype(np.float32)
            labels = rng.randint(0, args.classes, args.batch_size)
            exact_exp, exact_lsm = np.exp(z_s.astype(np.float64)), log_softmax64(z_s)
            ce64, kd64 = losses64(z_s, z_t, labels, args.classes)
            t_s, t_t = torch.from_numpy(z_s), torch.from_numpy(z_t)
            target = torch.from_numpy((np.eye(args.classes)[labels] * (1 - SMOOTHING) + SMOOTHING / args.classes)
                                      .astype(np.float32))
            m_s = ms.Tensor(z_s)
            pairs = {
                "exp": (np.max(np.abs(ops.exp(m_s).asnumpy() / exact_exp - 1)),
                        np.max(np.abs(torch.exp(t_s).numpy() / exact_exp - 1))),
                "lsm": (np.max(np.abs(ops.log_softmax(m_s, axis=-1).asnumpy() - exact_lsm)),
                        np.max(np.abs(F.log_softmax(t_s, -1).numpy() - exact_lsm))),
                "ce": (rel(cross_entropy(m_s, ms.Tensor(labels.astype(np.int32)), SMOOTHING).asnumpy(), ce64),
                       rel(-(target * F.log_softmax(t_s, -1)).sum(-1).mean(), ce64)),
                "kd": (rel(kd_loss(m_s, ms.Tensor(z_t), 1.0).asnumpy(), kd64),
                       rel(F.kl_div(F.log_softmax(t_s, -1), F.log_softmax(t_t, -1), reduction="batchmean",
                                    log_target=True), kd64))}
            for key, (ours, theirs) in pairs.items():
                errs[key][0].append(float(ours))
                errs[key][1].append(float(theirs))

        def largest(key):
            return {"ours": max(errs[key][0]), "torch": max(errs[key][1])}

        def median(key):
            return {"ours": float(np.median(errs[key][0])), "torch": float(np.median(errs[key][1]))}

        rows.append({"logit_std": scale, "exp_max_rel_err": largest("exp"), "log_softmax_max_abs_err": largest("lsm"),
                     "ce_rel_err_median": median("ce"), "ce_rel_err_max": largest("ce"),
                     "kd_rel_err_median": median("kd"), "kd_rel_err_max": largest("kd")})
    # a student with a zero classifier (timm's ResMLP at step 1) gives a row of zeros: exactly -ln C each
    zeros, exact = np.zeros((1, args.classes)), -np.log(args.classes)
    uniform = {"mindspore_float32": float(ops.log_softmax(ms.Tensor(zeros.astype(np.float32)), axis=-1).asnumpy()[0, 0]
                                          - exact),
               "mindspore_float64": float(ops.log_softmax(ms.Tensor(zeros), axis=-1).asnumpy()[0, 0] - exact),
               "torch_float32": float(F.log_softmax(torch.zeros(1, args.classes), -1)[0, 0] - exact)}
    import mindspore
    return {"uniform_row_log_softmax_err": uniform, "batches": args.batches, "batch_size": args.batch_size, "classes": args.classes, "seed": args.seed, "label_smoothing": SMOOTHING,
            "kd_temperature": 1.0, "scales": rows,
            "versions": {"mindspore": mindspore.__version__, "torch": torch.__version__}}


def summary_lines(result):
    yield (f"{result['batches']} batches of {result['batch_size']} x {result['classes']} logits per scale; "
           "ours (MindSpore CPU float32) / torch float32, against float64")
    for r in result["scales"]:
        yield (f"logit std {r['logit_std']:g}: exp max rel err {r['exp_max_rel_err']['ours']:.1e} / "
               f"{r['exp_max_rel_err']['torch']:.1e}; log_softmax max abs err {r['log_softmax_max_abs_err']['ours']:.1e}"
               f" / {r['log_softmax_max_abs_err']['torch']:.1e}; CE rel err median {r['ce_rel_err_median']['ours']:.1e}"
               f" / {r['ce_rel_err_median']['torch']:.1e}; KD rel err median {r['kd_rel_err_median']['ours']:.1e} / "
               f"{r['kd_rel_err_median']['torch']:.1e}, max {r['kd_rel_err_max']['ours']:.1e} / "
               f"{r['kd_rel_err_max']['torch']:.1e}")
    yield from summary_tail(result)


def summary_tail(result):
    u = result["uniform_row_log_softmax_err"]
    yield (f"log_softmax of a row of zeros minus -ln C: MindSpore float32 {u['mindspore_float32']:.1e}, float64 "
           f"{u['mindspore_float64']:.1e}; torch float32 {u['torch_float32']:.1e}")


def final_line(result):
    row = next(r for r in result["scales"] if r["logit_std"] == 0.5)
    return (f"kd_rel_err_median_ours={row['kd_rel_err_median']['ours']:.3e} "
            f"kd_rel_err_median_torch32={row['kd_rel_err_median']['torch']:.3e}")


def main(argv=None):
    return run_and_report(build_arg_parser().parse_args(argv), run, summary_lines, final_line)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
