#!/usr/bin/env bash
# Fashion-MNIST study: scratch vs KD vs OFA-KD on three heterogeneous teacher -> student pairs.
# Trains (or reuses) a CNN and a ViT teacher, then every student for 3 seeds, and writes
# results.md / results.json / curves.png to OUT_DIR (default results/fashion_mnist).
# Usage: bash scripts/run_fashion_mnist_study.sh [DATA_DIR [OUT_DIR]] [--option value ...]
#   options go to python -m tools.study, e.g. --seeds 5 --epochs 3 --quick (see --help)
set -euo pipefail
source "$(dirname "$0")/common.sh"
DATA_DIR=/usr/share/datasets/fashion-mnist
OUT_DIR=results/fashion_mnist
if [ $# -ge 1 ] && [[ "$1" != -* ]]; then DATA_DIR=$1; shift; fi
if [ $# -ge 1 ] && [[ "$1" != -* ]]; then OUT_DIR=$1; shift; fi
DATA_DIR=$(realpath -m "$DATA_DIR")
OUT_DIR=$(realpath -m "$OUT_DIR")
[ -d "$DATA_DIR" ] || die "DATASET_PATH=$DATA_DIR is not a directory (install it: apt-get install dataset-fashion-mnist)"
cd "$ROOT_DIR"
"$PYTHON" -m tools.study --data-dir "$DATA_DIR" --out "$OUT_DIR" "$@"
