#!/usr/bin/env bash
# Data-parallel training on DEVICE_NUM devices of this machine (Ascend, GPU, or CPU workers) with msrun,
# or, on Ascend clusters that use one, with a rank table.
set -euo pipefail
USAGE="Usage: bash scripts/run_distribute_train.sh DEVICE_NUM CONFIG [key=value ...]
       bash scripts/run_distribute_train.sh --rank_table RANK_TABLE_FILE DEVICE_NUM CONFIG [key=value ...]
  e.g. bash scripts/run_distribute_train.sh 8 configs/imagenet/deit_tiny_to_resnet18.yaml data_dir=/data/imagenet
  Environment: MASTER_PORT (default 8118), LOG_DIR (per-worker logs, default ./msrun_log), GLOG_v (MindSpore
  and msrun log level on the console, default 3: errors only),
  PYTHON (default: the project's .venv, else python3)."
source "$(dirname "$0")/common.sh"
usage_or_help "$@"
RANK_TABLE=""
if [ "${1:-}" = "--rank_table" ]; then
  [ $# -ge 2 ] || usage_error "--rank_table needs a RANK_TABLE_FILE"
  RANK_TABLE=$(realpath -m "$2"); shift 2
  [ -f "$RANK_TABLE" ] || die "RANK_TABLE_FILE=$RANK_TABLE is not a file"
fi
[ $# -ge 2 ] || usage_error "DEVICE_NUM and CONFIG are required"
DEVICE_NUM=$1; shift
[[ "$DEVICE_NUM" =~ ^[1-9][0-9]*$ ]] || die "DEVICE_NUM=$DEVICE_NUM is not a positive integer"
CONFIG=$(check_config "$1"); shift
check_overrides "$@"
cd "$ROOT_DIR"
LOG_DIR=$(realpath -m "${LOG_DIR:-msrun_log}")
mkdir -p "$LOG_DIR"

if [ -n "$RANK_TABLE" ]; then
  # Ascend rank-table mode: one process per device, ranks from the table.
  export RANK_TABLE_FILE=$RANK_TABLE RANK_SIZE=$DEVICE_NUM
  pids=()
  for ((i = 0; i < DEVICE_NUM; i++)); do
    DEVICE_ID=$i RANK_ID=$i "$PYTHON" train.py --config "$CONFIG" distribute=true "$@" \
      > "$LOG_DIR/worker_$i.log" 2>&1 &
    pids+=($!)
  done
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
  echo "logs in $LOG_DIR"
  exit $status
fi

command -v msrun >/dev/null 2>&1 || die "msrun not found: it ships with MindSpore >= 2.3 (activate the environment that has it)"
# msrun's own INFO/WARNING lines and the workers' MindSpore warnings stay in the logs, off the console
# (GLOG_v=3: errors only), unless GLOG_v is set already
export GLOG_v=${GLOG_v:-3}
status=0
msrun --worker_num="$DEVICE_NUM" --local_worker_num="$DEVICE_NUM" --master_port="${MASTER_PORT:-8118}" \
  --log_dir="$LOG_DIR" --join=True \
  train.py --config "$CONFIG" distribute=true "$@" || status=$?
echo "logs in $LOG_DIR"
exit $status
