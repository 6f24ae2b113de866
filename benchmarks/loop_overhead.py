"""Loop overhead: train.py's own images/s over an epoch against the bare fused step's, in one process.

train.py's loop adds the data pipeline, the device-side step sums (``StepStats``), the progress
callback and the reads at log points to the step that ``benchmarks/train_step.py`` times alone. This
script builds a run exactly as train.py does (``src.engine.trainer.Trainer`` on fake data, a randomly
initialised teacher checkpoint), then alternates, round after round:

* one epoch of the Trainer's own loop (``images_per_s`` of its epoch record, the number train.py logs;
  evaluation and checkpoints come after that clock stops), and
* the same number of bare step calls on one device-resident batch, each followed by a read of the loss
  (how ``benchmarks/train_step.py`` times a step), reported as the median;
* the same number of bare step calls again, read once at the end (no host read in between, as in the
  loop): the loop's cost without its data pipeline, sums and callbacks.

It also counts the device-to-host reads made during the loop's epochs (every ``Tensor.asnumpy`` /
``item`` / ``tolist`` / ``__array__`` call) and at which steps they happened. Example::

    python benchmarks/loop_overhead.py --teacher resnet10 --student vit_p4_pico --image-size 32 \\
        --batch-size 128 --steps 10 --rounds 3 --log-interval 5

Per round it also reports the loop's steady state (end of an epoch's first step to the end of its
last, per step, wall and process CPU time) next to the bare step's median wall and CPU time: CPU time
is the fairer figure when other jobs share the machine. The last line printed is
``loop_overhead=<fraction>`` (1 - epoch images/s / bare step images/s, medians over the rounds).
"""
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  first: caps oneDNN at AVX2 before MindSpore loads
from src.flags import OneLineParser, int_range  # noqa: E402


def build_arg_parser():
    p = OneLineParser(prog="python -m benchmarks loop", description="train.py's epoch images/s vs the bare step's, alternated in one process.")
    p.add_argument("--teacher", default="resnet10")
    p.add_argument("--student", default="vit_p4_pico")
    p.add_argument("--distiller", default="ofa")
    p.add_argument("--image-size", type=int_range(1), default=32)
    p.add_argument("--batch-size", type=int_range(1), default=128)
    p.add_argument("--num-classes", type=int_range(1), default=10)
    p.add_argument("--steps", type=int_range(1), default=10, help="steps per epoch (the fake split holds steps x batch images)")
    p.add_argument("--rounds", type=int_range(1), default=3, help="timed rounds (epoch, then bare steps) after a warm-up round")
    p.add_argument("--log-interval", type=int_range(1), default=5)
    p.add_argument("--opt", default="adamw", choices=("sgd", "adamw"))
    p.add_argument("--json", default=None, help="write the results here")
    return p


class HostReads:
    """Counts device-to-host reads of MindSpore tensors while ``active``, by the step they follow."""

    NAMES = ("asnumpy", "_item", "tolist", "__array__")

    def __init__(self):
        from mindspore.common.tensor import Tensor

        self.active, self.step, self.by_step = False, 0, {}
        for name in self.NAMES:
            setattr(Tensor, name, self._counting(getattr(Tensor, name)))

    def _counting(self, original):
        def read(tensor, *args, **kwargs):
            if self.active:
                self.by_step[self.step] = self.by_step.get(self.step, 0) + 1
            return original(tensor, *args, **kwargs)
        return read


def main(argv=None):
    args = build_arg_parser().parse_args(argv)
    from benchmarks.report import ROOT, command_line
    from src.provenance import finish, provenance

    facts = provenance(command_line(), ROOT)  # the command, commit, cores and load, as every benchmark's JSON
    import numpy as np

    import mindspore as ms

    from src.checkpoint import save_atomic
    from src.config import load_config
    from src.engine.builders import setup_context
    from src.engine.trainer import Trainer
    from src.teacher import build_teacher_model

    work = tempfile.mkdtemp(prefix="loop_overhead_")
    overrides = [f"student={args.student}", f"teacher={args.teacher}", f"distiller={args.distiller}",
                 "dataset=fake", f"num_classes={args.num_classes}", f"image_size={args.image_size}",
                 f"batch_size={args.batch_size}", f"fake_samples={args.steps * args.batch_size}",
                 f"log_interval={args.log_interval}", f"opt={args.opt}", "epochs=1000", "val_every=100000",
                 "warmup_epochs=0", f"output_dir={work}", "num_workers=2"]
    cfg = load_config(None, overrides)
    setup_context(cfg, distributed=False)
    if args.distiller != "none":
        teacher_ckpt = os.path.join(work, "teacher.ckpt")
        save_atomic(build_teacher_model(cfg, load=False), teacher_ckpt)
        cfg.teacher_ckpt = teacher_ckpt

    reads = HostReads()
    ticks = []  # (wall, process CPU) after every step of the loop

    def on_event(kind, info):
        if kind == "tick":
            reads.step = info["global_step"]
            ticks.append((time.perf_counter(), time.process_time()))

    trainer = Trainer(cfg, on_event=on_event)
    batch = next(iter(trainer._dataset("train", 0).create_tuple_iterator(num_epochs=1)))

    def bare_steps(count):
        times, cpu = [], []
        for _ in range(count):
            t0, c0 = time.perf_counter(), time.process_time()
            float(trainer.step(*batch)[0].asnumpy())  # the benchmark's sync: read the loss back
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return times, cpu

    def queued_steps(count):
        """``count`` steps with one read at the end (no host read in between, as in the loop): per-step time."""
        t0, c0 = time.perf_counter(), time.process_time()
        out = None
        for _ in range(count):
            out = trainer.step(*batch)
        float(out[0].asnumpy())
        return (time.perf_counter() - t0) / count, (time.process_time() - c0) / count

    t0 = time.perf_counter()
    trainer._run_epoch(0, 0)  # warm-up: compiles the loop's graph
    bare_steps(2)  # and the bare step's
    warmup_s = time.perf_counter() - t0
    loop_ips, step_ips, step_times, steady, rows = [], [], [], [], []
    for r in range(args.rounds):
        ticks.clear()
        reads.active = True
        trainer._run_epoch(r + 1, 0)
        reads.active = False
        loop_ips.append(trainer.history[-1]["images_per_s"])
        # steady state: from the end of the epoch's first step to the end of its last (data waits and reads in)
        (w0, c0), (w1, c1) = ticks[0], ticks[-1]
        loop_step = ((w1 - w0) / (len(ticks) - 1), (c1 - c0) / (len(ticks) - 1))
        steady.append(loop_step)
        times, cpu = bare_steps(args.steps)
        step_times += times
        bare = (statistics.median(times), statistics.median(cpu))
        step_ips.append(args.batch_size / bare[0])
        queued = queued_steps(args.steps)
        rows.append({"loop_epoch_images_per_s": loop_ips[-1], "loop_step_s": loop_step[0], "loop_step_cpu_s": loop_step[1],
                     "bare_step_s": bare[0], "bare_step_cpu_s": bare[1],
                     "queued_step_s": queued[0], "queued_step_cpu_s": queued[1]})
        print(f"round {r + 1}: epoch {loop_ips[-1]:.2f} img/s (train.py's figure); per step: loop {loop_step[0]:.3f} s "
              f"wall / {loop_step[1]:.3f} s CPU, bare step read each time {bare[0]:.3f} / {bare[1]:.3f} s, "
              f"bare steps read once {queued[0]:.3f} / {queued[1]:.3f} s", flush=True)
    loop, step = statistics.median(loop_ips), statistics.median(step_ips)
    loop_wall = statistics.median(r["loop_step_s"] for r in rows)
    loop_cpu = statistics.median(r["loop_step_cpu_s"] for r in rows)
    bare_wall = statistics.median(r["bare_step_s"] for r in rows)
    bare_cpu = statistics.median(r["bare_step_cpu_s"] for r in rows)
    queued_wall = statistics.median(r["queued_step_s"] for r in rows)
    queued_cpu = statistics.median(r["queued_step_cpu_s"] for r in rows)
    # reads made inside the epochs' step loops, by step within the epoch (epoch ends coincide with a log point)
    per_step = {}
    for global_step, n in reads.by_step.items():
        per_step.setdefault((global_step - 1) % args.steps + 1, []).append(n)
    between = {s: v for s, v in per_step.items() if s % args.log_interval and s != args.steps}
    result = {
        "config": vars(args), "warmup_s": warmup_s, "loop_images_per_s": loop_ips, "step_images_per_s": step_ips,
        "step_times_s": step_times, "rounds": rows, "loop_over_step": loop / step, "loop_overhead": 1.0 - loop / step,
        "steady_wall_overhead": loop_wall / bare_wall - 1.0, "steady_cpu_overhead": loop_cpu / bare_cpu - 1.0,
        "steady_wall_overhead_vs_read_once": loop_wall / queued_wall - 1.0,
        "steady_cpu_overhead_vs_read_once": loop_cpu / queued_cpu - 1.0,
        "host_reads_by_step_in_epoch": {str(k): v for k, v in sorted(per_step.items())},
        "host_reads_between_log_points": sum(sum(v) for v in between.values()),
        "mindspore": ms.__version__, "numpy": np.__version__,
    }
    print(f"host reads per epoch by step (step: reads in each timed epoch): "
          f"{ {k: v for k, v in sorted(per_step.items())} }")
    print(f"host reads between log points: {result['host_reads_between_log_points']}")
    print(f"epoch (train.py's figure) {loop:.2f} img/s vs bare step {step:.2f} img/s: loop/step {loop / step:.3f}")
    print(f"steady state per step: loop {loop_wall:.3f} s vs bare {bare_wall:.3f} s wall "
          f"({100 * result['steady_wall_overhead']:+.1f} %), {loop_cpu:.3f} s vs {bare_cpu:.3f} s CPU "
          f"({100 * result['steady_cpu_overhead']:+.1f} %)")
    print(f"against bare steps read once: {loop_wall:.3f} s vs {queued_wall:.3f} s wall "
          f"({100 * result['steady_wall_overhead_vs_read_once']:+.1f} %), {loop_cpu:.3f} s vs {queued_cpu:.3f} s CPU "
          f"({100 * result['steady_cpu_overhead_vs_read_once']:+.1f} %)")
    if args.json:
        from src.files import write_json_atomic

        write_json_atomic(args.json, {**result, "provenance": finish(facts)})
    print(f"loop_overhead={result['loop_overhead']:.4f}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
