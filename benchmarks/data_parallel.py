"""Data parallel against one device at the total batch: ``scripts/run_distribute_train.sh 2`` at batch b and
``train.py`` at 2b on the same config, their final weights compared tensor by tensor.

    python -m benchmarks.data_parallel --json results/equivalence/data_parallel.json [--opt sgd|adamw]

The config: a BN-free student (ResMLP at 16 px: affine layers, no batch statistics), the fake data set (no
augmentation: the two sides see the same pixels), 2 epochs of 4 steps, the recipe-style optimizer given by
``--opt``, clipping at 1.0, label smoothing 0.1. Both runs start at once (the single process compiles while
the two ranks do); msrun listens on a free port of 127.0.0.1.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = """dataset: fake
fake_samples: 32
num_classes: 4
image_size: 16
num_workers: 1
epochs: 2
val_every: 100
student: resmlp_p4_pico
distiller: none
scheduler: cosine
warmup_epochs: 0
clip_grad: 1.0
label_smoothing: 0.1
log_interval: 1
"""
OPTIMIZERS = {
    "sgd": "opt: sgd\nlr: 0.1\nmin_lr: 0.1\nmomentum: 0.9\nnesterov: true\nweight_decay: 1.0e-4\n",
    "adamw": "opt: adamw\nlr: 1.0e-3\nmin_lr: 1.0e-3\nweight_decay: 0.05\n",
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _msrun_found():
    return shutil.which("msrun") is not None or os.path.exists(os.path.join(os.path.dirname(sys.executable), "msrun"))


def run(work, opt="sgd", batch=4):
    """Train both ways in ``work``; ``{"worst_rel", "worst_tensor", "max_abs", "ranks_identical", ...}``.
    RuntimeError with the end of the logs when a run fails."""
    if not _msrun_found():
        raise RuntimeError("msrun is not installed next to this Python: it ships with MindSpore")
    cfg = os.path.join(work, "dp.yaml")
    with open(cfg, "w") as f:
        f.write(CONFIG + OPTIMIZERS[opt])
    env = {**os.environ, "PYTHON": sys.executable, "MASTER_PORT": str(_free_port()),
           "LOG_DIR": os.path.join(work, "logs"),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    one = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), "--config", cfg, f"batch_size={2 * batch}",
                            f"output_dir={os.path.join(work, 'one')}"], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    two = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_distribute_train.sh"), "2", cfg,
                          f"batch_size={batch}", "rank_checkpoints=true", f"output_dir={os.path.join(work, 'two')}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out_one = one.communicate(timeout=900)[0]
    if one.returncode != 0:
        raise RuntimeError("single-device run failed:\n" + out_one[-3000:])
    if two.returncode != 0:
        logs = ""
        if os.path.isdir(env["LOG_DIR"]):
            logs = "\n".join(open(os.path.join(env["LOG_DIR"], f), errors="replace").read()[-2000:]
                             for f in sorted(os.listdir(env["LOG_DIR"])))
        raise RuntimeError("two-rank run failed:\n" + two.stdout[-2000:] + two.stderr[-2000:] + logs)
    import mindspore as ms

    single = ms.load_checkpoint(os.path.join(work, "one", "last.ckpt"))
    ranks = [ms.load_checkpoint(os.path.join(work, "two", f"rank_{r}", "last.ckpt")) for r in (0, 1)]
    with open(os.path.join(work, "two", "train.log")) as f:
        devices = re.search(r"\b2 \w+ device\(s\)", f.read()) is not None  # e.g. "2 CPU device(s)"
    result = {"opt": opt, "batch_per_rank": batch, "ranks": 2, "single_batch": 2 * batch, "steps": 8,
              "tensors": len(single), "same_names": single.keys() == ranks[0].keys() == ranks[1].keys(),
              "two_devices_logged": devices, "batch_statistics": sorted(n for n in single if "moving_" in n),
              "ranks_identical": all(np.array_equal(ranks[0][n].asnumpy(), ranks[1][n].asnumpy()) for n in single),
              "worst_rel": 0.0, "worst_tensor": None, "max_abs": 0.0}
    for name, tensor in single.items():
        a, b = ranks[0][name].asnumpy().astype(np.float64), tensor.asnumpy().astype(np.float64)
        rel = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
        if rel >= result["worst_rel"]:
            result["worst_rel"], result["worst_tensor"] = rel, name
        result["max_abs"] = max(result["max_abs"], float(np.abs(a - b).max()))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description="2 msrun ranks at batch b against 1 process at 2b")
    parser.add_argument("--opt", choices=sorted(OPTIMIZERS), nargs="+", default=["sgd"])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = []
    for opt in args.opt:
        with tempfile.TemporaryDirectory() as work:
            results.append(run(work, opt))
        r = results[-1]
        print(f"{opt}: worst tensor {r['worst_tensor']} {r['worst_rel']:.2e} relative, max abs {r['max_abs']:.2e}; "
              f"ranks identical {r['ranks_identical']}")
    if args.json:
        from src.files import write_text_atomic

        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        write_text_atomic(args.json, json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
