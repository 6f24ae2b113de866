#!/usr/bin/env bash
# Train on one device.
set -euo pipefail
USAGE="Usage: bash scripts/run_standalone_train.sh CONFIG [key=value ...]
  e.g. bash scripts/run_standalone_train.sh configs/fashion_mnist/ofa_vit_from_resnet10.yaml device_target=GPU
       bash scripts/run_standalone_train.sh OUTPUT_DIR/config.yaml resume=auto     (continue a run)
  key=value overrides are config keys (python train.py --help lists them).
  Python: \$PYTHON, else the project's .venv, else python3."
source "$(dirname "$0")/common.sh"
usage_or_help "$@"
[ $# -ge 1 ] || usage_error "CONFIG is missing"
CONFIG=$(check_config "$1"); shift
abs_path_args "$@"
set -- "${ARGS[@]}"
check_overrides "$@"
cd "$ROOT_DIR"
exec "$PYTHON" train.py --config "$CONFIG" "$@"
