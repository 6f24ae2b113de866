"""The command-line ending every benchmark shares: run, print the summary, write ``--json``, print the one
line scripts read."""
import os
import subprocess
import sys

from src.files import write_json_atomic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_record():
    """How this result was made: the command line, the commit (``+dirty`` with uncommitted changes to
    tracked files), the cores and the 1/5/15-minute load average (now; ``run_and_report`` stores the one
    at the end of the run)."""
    def git(*argv):
        try:
            return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "--short", "HEAD") or None
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    program = sys.argv[0]
    if program.endswith("__main__.py"):
        program = "python -m " + os.path.basename(os.path.dirname(program))
    elif program.endswith(".py"):
        program = "python " + os.path.relpath(program, ROOT)
    command = " ".join([program] + sys.argv[1:])
    return {"command": command, "commit": commit, "cpus": os.cpu_count(), "loadavg_end": list(os.getloadavg())}


def run_and_report(args, run_benchmark, summary_lines, final_line):
    """``run_benchmark(args)`` -> result dict; bad input (``ValueError``) is one ``error:`` line, exit status 2.
    The JSON is written atomically; ``final_line(result)`` is printed last."""
    record = run_record()  # the commit as the run starts (files edited while it runs do not count)
    try:
        result = run_benchmark(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result["run"] = dict(record, loadavg_end=list(os.getloadavg()))
    for line in summary_lines(result):
        print(line)
    if args.json:
        write_json_atomic(args.json, result)
    print(final_line(result))
    return 0
