#!/usr/bin/env bash
# Export the student of a checkpoint (MINDIR by default; AIR on Ascend; ONNX where the ops allow).
set -euo pipefail
USAGE="Usage: bash scripts/run_export.sh CONFIG CHECKPOINT [MINDIR|AIR|ONNX] [--file_name PATH] [key=value ...]
  e.g. bash scripts/run_export.sh OUTPUT_DIR/config.yaml OUTPUT_DIR/best.ckpt ONNX   (OUTPUT_DIR: a training run's output_dir)
  writes CHECKPOINT's path with .mindir (or --file_name PATH.mindir); python export.py --help for the options.
  Python: \$PYTHON, else the project's .venv, else python3."
source "$(dirname "$0")/common.sh"
usage_or_help "$@"
[ $# -ge 2 ] || usage_error "CONFIG and CHECKPOINT are required"
CONFIG=$(check_config "$1")
CKPT=$(caller_path "$2"); shift 2
[ -f "$CKPT" ] || die "CHECKPOINT=$CKPT is not a file"
FORMAT=MINDIR
case "${1:-}" in
  MINDIR|AIR|ONNX|mindir|air|onnx) FORMAT=${1^^}; shift ;;
esac
abs_path_args "$@"
set -- "${ARGS[@]}"
check_overrides "$@"
cd "$ROOT_DIR"
exec "$PYTHON" export.py --config "$CONFIG" --checkpoint "$CKPT" --file_format "$FORMAT" "$@"
