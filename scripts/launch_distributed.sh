# Shared by run_distribute_train.sh and run_distribute_cache.sh (sourced after common.sh, with USAGE, ENTRY
# (the Python entry point, relative to the repository) and ENTRY_ARGS set): parses the node options, checks
# the arguments, prints where every worker logs, then starts this node's workers with msrun or a rank table.
#   [--nodes N --node_rank R --master_addr ADDR] | [--rank_table FILE [--server_index I]]  [--dry_run]
#   DEVICES_PER_NODE CONFIG [arguments of ENTRY ...]
# Environment: MASTER_PORT (8118), CLUSTER_TIMEOUT (seconds the nodes wait for each other, 300),
# LOG_DIR (per-worker logs, default ./msrun_log of the caller's folder), PYTHON.

usage_or_help "$@"
NODES=1 NODE_RANK="" MASTER_ADDR="" RANK_TABLE="" SERVER_INDEX="" DRY_RUN=0
while [ $# -gt 0 ]; do
  opt=$1 val=""
  case "$opt" in
    --dry_run) DRY_RUN=1; shift; continue ;;
    --nodes=*|--node_rank=*|--master_addr=*|--rank_table=*|--server_index=*) val=${opt#*=}; opt=${opt%%=*}; shift ;;
    --nodes|--node_rank|--master_addr|--rank_table|--server_index)
      [ $# -ge 2 ] || usage_error "$opt needs a value"; val=$2; shift 2 ;;
    --) shift; break ;;
    -*) usage_error "unknown option $opt" ;;
    *) break ;;
  esac
  case "$opt" in
    --nodes) NODES=$val ;;
    --node_rank) NODE_RANK=$val ;;
    --master_addr) MASTER_ADDR=$val ;;
    --rank_table) RANK_TABLE=$val ;;
    --server_index) SERVER_INDEX=$val ;;
  esac
done
[ $# -ge 2 ] || usage_error "DEVICES_PER_NODE and CONFIG are required"
DEVICES=$1; shift
[[ "$DEVICES" =~ ^[1-9][0-9]*$ ]] || die "DEVICES_PER_NODE=$DEVICES is not a positive integer"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes $NODES is not a positive integer"
MASTER_PORT=${MASTER_PORT:-8118}
[[ "$MASTER_PORT" =~ ^[0-9]+$ ]] && [ "$MASTER_PORT" -ge 1024 ] && [ "$MASTER_PORT" -le 65535 ] ||
  die "MASTER_PORT=$MASTER_PORT is not a port number in 1024..65535"
CLUSTER_TIMEOUT=${CLUSTER_TIMEOUT:-300}
[[ "$CLUSTER_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "CLUSTER_TIMEOUT=$CLUSTER_TIMEOUT is not a positive number of seconds"
if [ -n "$RANK_TABLE" ]; then
  [ "$NODES" = 1 ] && [ -z "$NODE_RANK$MASTER_ADDR" ] ||
    usage_error "--rank_table takes the servers from the table: leave out --nodes, --node_rank and --master_addr"
  [ -z "$SERVER_INDEX" ] || [[ "$SERVER_INDEX" =~ ^[0-9]+$ ]] || die "--server_index $SERVER_INDEX is not an index (0, 1, ...)"
  RANK_TABLE=$(caller_path "$RANK_TABLE")
  [ -f "$RANK_TABLE" ] || die "RANK_TABLE_FILE=$RANK_TABLE is not a file"
else
  [ -z "$SERVER_INDEX" ] || usage_error "--server_index goes with --rank_table"
  if [ "$NODES" -gt 1 ]; then
    [ -n "$NODE_RANK" ] && [ -n "$MASTER_ADDR" ] ||
      usage_error "--nodes $NODES needs --node_rank (0..$((NODES - 1))) and --master_addr (node 0's address)"
  fi
  NODE_RANK=${NODE_RANK:-0}
  [[ "$NODE_RANK" =~ ^[0-9]+$ ]] && [ "$NODE_RANK" -lt "$NODES" ] ||
    die "--node_rank $NODE_RANK is not in 0..$((NODES - 1)) (--nodes $NODES)"
  MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
fi
CONFIG=$(check_config "$1"); shift
abs_path_args "$@"
set -- "${ARGS[@]}"
check_overrides "$@"
LOG_DIR=$(caller_path "${LOG_DIR:-msrun_log}")
cd "$ROOT_DIR"

# tail_log RANK CODE LOG: the one report of a failed worker.
tail_log() {
  echo "error: rank $1 exited with code $2; the job was stopped. Last lines of $3:" >&2
  tail -n 20 "$3" 2>/dev/null | sed 's/^/  | /' >&2 || true
}

if [ -n "$RANK_TABLE" ]; then
  # Ascend rank-table mode: this server's processes, their RANK_ID and DEVICE_ID from the table.
  plan=$("$PYTHON" "$ROOT_DIR/scripts/rank_table.py" "$RANK_TABLE" "$DEVICES" "$LOG_DIR" "$SERVER_INDEX") || exit $?
  read -r _ RANK_SIZE _ SERVER_I SERVER_ID <<< "$(head -n 1 <<< "$plan")"
  echo "rank table $RANK_TABLE: server $SERVER_I ($SERVER_ID) starts $DEVICES of $RANK_SIZE ranks"
  ranks=() devices=() logs=()
  while read -r _ rank device log; do
    ranks+=("$rank") devices+=("$device") logs+=("$log")
    echo "  rank $rank on device $device: log $log"
  done < <(tail -n +2 <<< "$plan")
  [ "$DRY_RUN" = 0 ] || exit 0
  mkdir -p "$LOG_DIR"
  declare -A rank_of=() log_of=()
  for i in "${!ranks[@]}"; do
    RANK_TABLE_FILE=$RANK_TABLE RANK_SIZE=$RANK_SIZE RANK_ID=${ranks[$i]} DEVICE_ID=${devices[$i]} \
      "$PYTHON" "$ENTRY" --config "$CONFIG" "${ENTRY_ARGS[@]}" "$@" > "${logs[$i]}" 2>&1 &
    rank_of[$!]=${ranks[$i]} log_of[$!]=${logs[$i]}
  done
  # The first worker to fail stops the others (they would wait for it in the next collective).
  status=0
  while [ ${#rank_of[@]} -gt 0 ]; do
    code=0
    wait -n -p done_pid "${!rank_of[@]}" || code=$?
    rank=${rank_of[$done_pid]} log=${log_of[$done_pid]}
    unset "rank_of[$done_pid]" "log_of[$done_pid]"
    if [ "$code" != 0 ]; then
      status=$code
      tail_log "$rank" "$code" "$log"
      # SIGKILL, as msrun does: the others are blocked in a collective that waits for the dead rank
      for pid in "${!rank_of[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
      for pid in "${!rank_of[@]}"; do wait "$pid" 2>/dev/null || true; done
      break
    fi
  done
  echo "logs in $LOG_DIR"
  exit $status
fi

WORLD=$((NODES * DEVICES))
FIRST=$((NODE_RANK * DEVICES))
cmd=("$PYTHON" "$ROOT_DIR/scripts/msrun_node.py" --worker_num="$WORLD" --local_worker_num="$DEVICES"
     --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" --master_port="$MASTER_PORT"
     --cluster_time_out="$CLUSTER_TIMEOUT" --log_dir="$LOG_DIR" --join=True
     "$ENTRY" --config "$CONFIG" "${ENTRY_ARGS[@]}" "$@")
echo "node $NODE_RANK of $NODES (master $MASTER_ADDR:$MASTER_PORT): ranks $FIRST..$((FIRST + DEVICES - 1)) of $WORLD"
for ((i = 0; i < DEVICES; i++)); do
  echo "  rank $((FIRST + i)) on device $i: log $LOG_DIR/worker_$((FIRST + i)).log"
done
if [ "$DRY_RUN" = 1 ]; then
  echo "would run: ${cmd[*]}"
  exit 0
fi
# msrun's own INFO/WARNING lines and the workers' MindSpore warnings stay in the logs, off the console
# (GLOG_v=3: errors only), unless GLOG_v is set already
export GLOG_v=${GLOG_v:-3}
status=0
"${cmd[@]}" || status=$?
echo "logs in $LOG_DIR"
exit $status
