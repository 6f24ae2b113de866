#!/usr/bin/env bash
# Heterogeneous distillation on Fashion-MNIST in a few minutes on a CPU (python -m tools.demo):
#   1. a ResNet-10 teacher trains alone (reused when its checkpoint matches),
#   2. a teacher-output cache holds its logits on the students' augmented views,
#   3. a ResMLP student trains alone, with KD and with OFA-KD at the same budget, from the cache,
#   4. the OFA-KD student is exported as MINDIR, the test top-1 curves drawn, and a table printed.
# Running it again reuses every finished step.
set -euo pipefail
USAGE="Usage: bash scripts/run_fashion_mnist_demo.sh [DATA_DIR] [--option value ...]
  DATA_DIR defaults to /usr/share/datasets/fashion-mnist; options go to python -m tools.demo,
  e.g. --epochs 6 --subset 4000 (python -m tools.demo --help lists them). Outputs go to
  outputs/fashion_mnist_demo (--work-dir). Python: \$PYTHON, else the project's .venv, else python3."
source "$(dirname "$0")/common.sh"
usage_or_help "$@"
DATA_DIR=/usr/share/datasets/fashion-mnist
if [ $# -ge 1 ] && [[ "$1" != -* ]]; then DATA_DIR=$1; shift; fi
DATA_DIR=$(caller_path "$DATA_DIR")
[ -d "$DATA_DIR" ] || die "DATASET_PATH=$DATA_DIR is not a directory (install it: apt-get install dataset-fashion-mnist)"
abs_path_args "$@"
set -- "${ARGS[@]}"
cd "$ROOT_DIR"
"$PYTHON" -m tools.demo --data-dir "$DATA_DIR" "$@"
