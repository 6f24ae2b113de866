"""``python -m benchmarks [flags]``: the training-step benchmark (see benchmarks/train_step.py)."""
import sys

from benchmarks.train_step import main

sys.exit(main())
