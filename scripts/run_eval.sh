#!/usr/bin/env bash
# Evaluate a checkpoint on the val split (top-1 / top-5 / loss, also written as JSON).
set -euo pipefail
USAGE="Usage: bash scripts/run_eval.sh CONFIG CHECKPOINT [--model student|teacher] [key=value ...]
  e.g. bash scripts/run_eval.sh OUTPUT_DIR/config.yaml OUTPUT_DIR/best.ckpt   (OUTPUT_DIR: a training run's output_dir)
  CONFIG is usually the config.yaml a training run saved next to its checkpoints (python eval.py --help).
  Python: \$PYTHON, else the project's .venv, else python3."
source "$(dirname "$0")/common.sh"
usage_or_help "$@"
[ $# -ge 2 ] || usage_error "CONFIG and CHECKPOINT are required"
CONFIG=$(check_config "$1")
CKPT=$(caller_path "$2"); shift 2
[ -f "$CKPT" ] || die "CHECKPOINT=$CKPT is not a file"
abs_path_args "$@"
set -- "${ARGS[@]}"
check_overrides "$@"
cd "$ROOT_DIR"
exec "$PYTHON" eval.py --config "$CONFIG" --checkpoint "$CKPT" "$@"
