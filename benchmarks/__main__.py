"""``python -m benchmarks MODE [flags]``: every mode below; without a mode, ``step``.

    python -m benchmarks step --teacher deit_tiny --student resnet18 ...   # benchmarks/train_step.py
    python -m benchmarks model --model swin_tiny --image-size 224 ...      # benchmarks/model_speed.py
    python -m benchmarks loader --images 200 --rounds 3 ...               # benchmarks/loader_speed.py
    python -m benchmarks loop --teacher resnet10 --student vit_p4_pico ... # benchmarks/loop_overhead.py
    python -m benchmarks equivalence --teacher deit_tiny --student resnet18 ...  # benchmarks/equivalence.py
    python -m benchmarks MODE --help                                       # one mode's flags
"""
import importlib
import sys

PROG = "python -m benchmarks"
# mode -> (module, what it measures)
MODES = {
    "step": ("benchmarks.train_step", "time full training steps (online or cached teacher) on random data"),
    "model": ("benchmarks.model_speed", "time one model's forward (and backward) against timm's in PyTorch"),
    "loader": ("benchmarks.loader_speed", "time the image-folder data pipeline against MindSpore's own"),
    "loop": ("benchmarks.loop_overhead", "train.py's epoch images/s against the bare step's, alternated"),
    "equivalence": ("benchmarks.equivalence", "train one pair in ours and in a PyTorch/timm twin step by step; "
                    "where they part"),
}


def usage():
    width = max(len(mode) for mode in MODES)
    lines = [f"usage: {PROG} [MODE] [flags]   ({PROG} MODE --help lists a mode's flags)", "", "modes:"]
    lines += [f"  {mode:<{width}}  {what}{' (the default)' if mode == 'step' else ''}"
              for mode, (_, what) in MODES.items()]
    return "\n".join(lines)


def main(argv):
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    mode = argv[0] if argv and argv[0] in MODES else "step"
    if argv and argv[0] in MODES:
        argv = argv[1:]
    return importlib.import_module(MODES[mode][0]).main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
