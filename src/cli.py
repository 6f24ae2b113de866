"""Small helpers the entry points share: atomic JSON output and a quiet process exit."""
import json
import os
import sys


def write_json_atomic(data, path):
    """Write ``data`` as JSON to ``path`` through a temp file, so a crash never leaves half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)
    return path


def exit_quietly(code):
    """Flush and leave without running MindSpore's cell destructors, which print spurious errors at shutdown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
