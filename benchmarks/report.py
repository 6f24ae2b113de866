"""The command-line ending every benchmark shares: run, print the summary, write ``--json``, print the one
line scripts read."""
import os
import shlex
import sys

from src.files import write_json_atomic
from src.provenance import finish, provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command_line():
    """The command that started this process, as a user would type it (``python -m benchmarks ...``)."""
    if sys.argv and os.path.basename(sys.argv[0]) == "__main__.py":
        return "python -m benchmarks " + shlex.join(sys.argv[1:])
    return shlex.join(["python"] + sys.argv)


def run_and_report(args, run_benchmark, summary_lines, final_line):
    """``run_benchmark(args)`` -> result dict; bad input (``ValueError``) is one ``error:`` line, exit status 2.
    The JSON is written atomically, with the command, the commit, the cores and the load average at the start
    and the end (``provenance``) and the parsed options; ``final_line(result)`` is printed last."""
    facts = provenance(command_line(), ROOT)
    try:
        result = run_benchmark(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in summary_lines(result):
        print(line)
    if args.json:
        options = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
        write_json_atomic(args.json, {**result, "provenance": finish(facts), "options": options})
    print(final_line(result))
    return 0
