#!/usr/bin/env bash
# Data-parallel training on one or several nodes (Ascend, GPU, or CPU workers) with msrun, or, on Ascend
# clusters that use one, with a rank table. docs/distributed.md has the recipes.
set -euo pipefail
USAGE="Usage: bash scripts/run_distribute_train.sh [--dry_run] DEVICES_PER_NODE CONFIG [key=value ...]
       bash scripts/run_distribute_train.sh --nodes N --node_rank R --master_addr ADDR DEVICES_PER_NODE CONFIG [key=value ...]
       bash scripts/run_distribute_train.sh --rank_table RANK_TABLE_FILE [--server_index I] DEVICES_PER_NODE CONFIG [key=value ...]
  e.g. one node:  bash scripts/run_distribute_train.sh 8 configs/imagenet/deit_tiny_to_resnet18.yaml data_dir=/data/imagenet
       two nodes: the same command on each, with --nodes 2 --node_rank 0|1 --master_addr NODE0_IP before 8
  --dry_run prints every worker's rank, device and log, then stops. Relative paths are the caller's.
  Environment: MASTER_PORT (default 8118), CLUSTER_TIMEOUT (seconds the nodes wait for each other, default 300),
  LOG_DIR (per-worker logs, default ./msrun_log), GLOG_v (MindSpore and msrun log level on the console,
  default 3: errors only), PYTHON (default: the project's .venv, else python3)."
source "$(dirname "$0")/common.sh"
ENTRY=train.py
ENTRY_ARGS=(distribute=true)
source "$(dirname "$0")/launch_distributed.sh"
