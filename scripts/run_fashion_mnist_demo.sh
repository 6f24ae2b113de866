#!/usr/bin/env bash
# A real OFA-KD run on a CPU in minutes: Fashion-MNIST (Debian's dataset-fashion-mnist package).
#   1. train a ResNet-10 teacher alone (skipped when its checkpoint exists),
#   2. distil it into a small ViT student with OFA-KD,
#   3. evaluate the student and export it as MINDIR.
# Running it again continues an interrupted step and reuses finished ones (resume=auto).
set -euo pipefail
USAGE="Usage: bash scripts/run_fashion_mnist_demo.sh [DATA_DIR] [key=value ...]
  DATA_DIR defaults to /usr/share/datasets/fashion-mnist; key=value overrides apply to step 2 (the student),
  e.g. bash scripts/run_fashion_mnist_demo.sh epochs=1
  Python: \$PYTHON, else the project's .venv, else python3."
source "$(dirname "$0")/common.sh"
usage_or_help "$@"
DATA_DIR=/usr/share/datasets/fashion-mnist
if [ $# -ge 1 ] && [[ "$1" != *=* ]]; then DATA_DIR=$1; shift; fi
DATA_DIR=$(realpath -m "$DATA_DIR")
[ -d "$DATA_DIR" ] || die "DATASET_PATH=$DATA_DIR is not a directory (install it: apt-get install dataset-fashion-mnist)"
cd "$ROOT_DIR"
TEACHER_DIR=outputs/fashion_mnist/teacher_resnet10
STUDENT_DIR=outputs/fashion_mnist/ofa_vit_p4_pico

echo "== 1/3 teacher: resnet10 alone (a finished teacher is reused)"
"$PYTHON" train.py --config configs/fashion_mnist/teacher_resnet10.yaml data_dir="$DATA_DIR" resume=auto
echo "== 2/3 student: vit_p4_pico distilled with OFA-KD"
"$PYTHON" train.py --config configs/fashion_mnist/ofa_vit_from_resnet10.yaml data_dir="$DATA_DIR" \
  teacher_ckpt="$TEACHER_DIR/best.ckpt" resume=auto "$@"
echo "== 3/3 evaluate and export the student"
"$PYTHON" eval.py --config "$STUDENT_DIR/config.yaml" --checkpoint "$STUDENT_DIR/best.ckpt"
"$PYTHON" export.py --config "$STUDENT_DIR/config.yaml" --checkpoint "$STUDENT_DIR/best.ckpt" \
  --file_name "$STUDENT_DIR/student"
