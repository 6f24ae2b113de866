"""``python -m benchmarks MODE [flags]``: ``step`` (the default) times training steps, ``model`` one model,
``loader`` the image-folder data pipeline, ``equivalence`` trains one pair in ours and in a PyTorch/timm twin
step by step and reports where they part.

    python -m benchmarks step --teacher deit_tiny --student resnet18 ...   # benchmarks/train_step.py
    python -m benchmarks model --model swin_tiny --image-size 224 ...      # benchmarks/model_speed.py
    python -m benchmarks loader --images 200 --rounds 3 ...               # benchmarks/loader_speed.py
    python -m benchmarks equivalence --teacher deit_tiny --student resnet18 ...  # benchmarks/equivalence.py
    python -m benchmarks --teacher deit_tiny ...                           # no mode: the step benchmark
"""
import sys


def main(argv):
    if argv and argv[0] == "model":
        from benchmarks.model_speed import main as run
        return run(argv[1:])
    if argv and argv[0] == "loader":
        from benchmarks.loader_speed import main as run
        return run(argv[1:])
    if argv and argv[0] == "equivalence":
        from benchmarks.equivalence import main as run
        return run(argv[1:])
    if argv and argv[0] == "step":
        argv = argv[1:]
    from benchmarks.train_step import main as run
    return run(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
