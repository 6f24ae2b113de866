#!/usr/bin/env bash
# Evaluate a checkpoint on the val split (top-1 / top-5 / loss, also written as JSON).
# Usage: bash scripts/run_eval.sh CONFIG CHECKPOINT [--model student|teacher] [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [ $# -lt 2 ]; then
  echo "Usage: bash scripts/run_eval.sh CONFIG CHECKPOINT [--model student|teacher] [key=value ...]" >&2
  exit 1
fi
CONFIG=$(check_config "$1")
CKPT=$(realpath -m "$2"); shift 2
[ -f "$CKPT" ] || die "CHECKPOINT=$CKPT is not a file"
check_overrides "$@"
cd "$ROOT_DIR"
exec "$PYTHON" eval.py --config "$CONFIG" --checkpoint "$CKPT" "$@"
