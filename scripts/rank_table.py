"""The processes this server of an Ascend rank table starts, for run_distribute_*.sh (stdlib only, fast).

    python scripts/rank_table.py RANK_TABLE_FILE DEVICES_PER_NODE LOG_DIR [SERVER_INDEX]

prints ``RANK_SIZE N SERVER I ID`` and one ``WORKER RANK_ID DEVICE_ID LOG_PATH`` line per local device,
or one ``error: ...`` line and exits 2.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from src.launch.rank_table import plan_lines, server_plan  # noqa: E402


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    table, devices, log_dir = argv[:3]
    index = int(argv[3]) if len(argv) == 4 and argv[3] != "" else None
    try:
        plan = server_plan(table, int(devices), server_index=index)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(plan_lines(plan, log_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
