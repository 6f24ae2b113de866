#!/usr/bin/env bash
# Train on one device.
# Usage: bash scripts/run_standalone_train.sh CONFIG [key=value ...]
#   e.g. bash scripts/run_standalone_train.sh configs/fashion_mnist/ofa_resnet18_from_vit.yaml device_target=GPU
set -euo pipefail
source "$(dirname "$0")/common.sh"
if [ $# -lt 1 ]; then
  echo "Usage: bash scripts/run_standalone_train.sh CONFIG [key=value ...]" >&2
  exit 1
fi
CONFIG=$(check_config "$1"); shift
check_overrides "$@"
cd "$ROOT_DIR"
exec "$PYTHON" train.py --config "$CONFIG" "$@"
