#!/usr/bin/env bash
# Write a teacher-output cache (tools/cache_teacher.py) with every device of one or several nodes: each rank
# writes its share of the images. The cache folder (--out) must be on a file system all nodes share.
set -euo pipefail
USAGE="Usage: bash scripts/run_distribute_cache.sh [--dry_run] DEVICES_PER_NODE CONFIG --out DIR --views K [option or key=value ...]
       bash scripts/run_distribute_cache.sh --nodes N --node_rank R --master_addr ADDR DEVICES_PER_NODE CONFIG --out DIR --views K [...]
       bash scripts/run_distribute_cache.sh --rank_table RANK_TABLE_FILE [--server_index I] DEVICES_PER_NODE CONFIG --out DIR --views K [...]
  e.g. bash scripts/run_distribute_cache.sh 8 configs/imagenet/deit_tiny_to_resnet18.yaml --out /shared/cache --views 8
  DIR must be on a file system every node sees (the last rank to finish completes the cache there).
  python tools/cache_teacher.py --help lists the options. Relative paths are the caller's.
  Environment: MASTER_PORT (default 8118), CLUSTER_TIMEOUT (default 300 s), LOG_DIR (default ./msrun_log), PYTHON."
source "$(dirname "$0")/common.sh"
ENTRY=tools/cache_teacher.py
ENTRY_ARGS=()
source "$(dirname "$0")/launch_distributed.sh"
