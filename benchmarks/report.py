"""The command-line ending every benchmark shares: run, print the summary, write ``--json``, print the one
line scripts read."""
import sys

from src.files import write_json_atomic


def run_and_report(args, run_benchmark, summary_lines, final_line):
    """``run_benchmark(args)`` -> result dict; bad input (``ValueError``) is one ``error:`` line, exit status 2.
    The JSON is written atomically; ``final_line(result)`` is printed last."""
    try:
        result = run_benchmark(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for line in summary_lines(result):
        print(line)
    if args.json:
        write_json_atomic(args.json, result)
    print(final_line(result))
    return 0
