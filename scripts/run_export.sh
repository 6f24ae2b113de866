#!/usr/bin/env bash
# Export the student of a checkpoint (MINDIR by default; AIR on Ascend; ONNX where the ops allow).
# Usage: bash scripts/run_export.sh CONFIG CHECKPOINT [MINDIR|AIR|ONNX] [key=value ...]
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [ $# -lt 2 ]; then
  echo "Usage: bash scripts/run_export.sh CONFIG CHECKPOINT [MINDIR|AIR|ONNX] [key=value ...]" >&2
  exit 1
fi
CONFIG=$(check_config "$1")
CKPT=$(realpath -m "$2"); shift 2
[ -f "$CKPT" ] || die "CHECKPOINT=$CKPT is not a file"
FORMAT=MINDIR
case "${1:-}" in
  MINDIR|AIR|ONNX|mindir|air|onnx) FORMAT=${1^^}; shift ;;
esac
cd "$ROOT_DIR"
exec "$PYTHON" export.py --config "$CONFIG" --checkpoint "$CKPT" --file_format "$FORMAT" "$@"
