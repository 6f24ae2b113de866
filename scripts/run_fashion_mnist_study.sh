#!/usr/bin/env bash
# Fashion-MNIST study: scratch vs KD vs OFA-KD vs RSD vs OFA+RSD on three heterogeneous teacher -> student pairs.
# Trains (or reuses) a CNN and a ViT teacher, runs each once into a teacher-output cache, then every student
# for 3 seeds, and writes
# results.md / results.json / curves.png to OUT_DIR.
set -euo pipefail
USAGE="Usage: bash scripts/run_fashion_mnist_study.sh [DATA_DIR [OUT_DIR]] [--option value ...]
  DATA_DIR defaults to /usr/share/datasets/fashion-mnist, OUT_DIR to outputs/fashion_mnist_study/results;
  options go to python -m tools.study, e.g. --seeds 5 --epochs 3 --quick (python -m tools.study --help).
  Python: \$PYTHON, else the project's .venv, else python3."
source "$(dirname "$0")/common.sh"
usage_or_help "$@"
DATA_DIR=/usr/share/datasets/fashion-mnist
OUT_DIR=outputs/fashion_mnist_study/results
if [ $# -ge 1 ] && [[ "$1" != -* ]]; then DATA_DIR=$1; shift; fi
if [ $# -ge 1 ] && [[ "$1" != -* ]]; then OUT_DIR=$1; shift; fi
DATA_DIR=$(caller_path "$DATA_DIR")
OUT_DIR=$(caller_path "$OUT_DIR")
[ -d "$DATA_DIR" ] || die "DATASET_PATH=$DATA_DIR is not a directory (install it: apt-get install dataset-fashion-mnist)"
abs_path_args "$@"
set -- "${ARGS[@]}"
cd "$ROOT_DIR"
"$PYTHON" -m tools.study --data-dir "$DATA_DIR" --out "$OUT_DIR" "$@"
