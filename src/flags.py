"""Command-line flags of the tools and benchmarks: one-line parse errors and range-checked numbers."""
import argparse
import math


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
