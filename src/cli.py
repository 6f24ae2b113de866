"""Small helpers the entry points share: one-line messages for MindSpore's errors, where graph-compile
reports go, a quiet process exit, and range-checked numeric flags."""
import argparse
import math
import os
import re
import sys
import tempfile

_COMPILE_REPORT = re.compile(r"See file '([^']*analyze_fail\.ir)'")


def send_compile_reports_to(folder):
    """MindSpore writes a failed graph compile's report (``rank_N/om/analyze_fail.ir``) under the working
    directory unless told otherwise; send it to ``folder`` (None: the system's temp folder)."""
    os.environ.setdefault("MS_OM_PATH", folder or os.path.join(tempfile.gettempdir(), "ofakd-graph-reports"))


def runtime_error_message(err):
    """One line for a MindSpore ``RuntimeError``: the cause (e.g. "cannot read image PATH: ...") from the
    pages of text around it, plus where the compiler's report is when a graph failed to compile."""
    from src.data import pipeline_error_message

    message = pipeline_error_message(err)
    report = _COMPILE_REPORT.search(str(err))
    if report:
        message = f"graph compile failed: {message} (compiler report: {report.group(1)})"
    return message


def exit_quietly(code):
    """Flush and leave without running MindSpore's cell destructors, which print spurious errors at shutdown."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``error: argument --x: ...`` (exit 2), without the usage."""

    def error(self, message):
        self.exit(2, f"error: {message}\n")


def int_range(low, high=None):
    """An argparse ``type``: an integer in ``[low, high]`` (no upper bound when ``high`` is None); argparse's
    error then names the flag, e.g. "argument --teacher-batch: must be an integer >= 1, got 0"."""
    want = f"an integer >= {low}" if high is None else f"an integer in {low}..{high}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {want}, got {value}")
        return value

    parse.__name__ = want  # argparse names the type in some messages
    return parse


def float_range(low, high=None, low_open=False, high_open=False):
    """An argparse ``type``: a finite float above ``low`` (``> low`` when ``low_open``) and, when given,
    below ``high`` (``< high`` when ``high_open``)."""
    want = f"a number {'>' if low_open else '>='} {low:g}" if high is None else \
        f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {text!r}") from None
        above = value > low if low_open else value >= low
        below = high is None or (value < high if high_open else value <= high)
        if not (above and below and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return value

    parse.__name__ = want
    return parse
