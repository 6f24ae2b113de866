"""Speed benchmarks: ``python -m benchmarks`` (or ``python benchmarks/train_step.py``) times training steps."""
