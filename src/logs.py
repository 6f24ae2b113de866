"""Logging set-up shared by the entry points: plain lines to the terminal, and to the run's log file.

The file is attached only once the run owns its output folder (after every check passed); what was
logged before is kept in memory and written first, so the file holds the whole run. It is opened for
appending: a resumed run continues the same ``train.log``.
"""
import logging
import os
import sys

FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")


class _Buffer(logging.Handler):
    """Keeps records until the log file exists."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


_state = {"buffer": None, "file": None}


def setup_logging(log_file=None, rank=0):
    """Configure the root logger: INFO to stderr on rank 0 (warnings elsewhere); records go to ``log_file``
    now, or are kept until ``attach_log_file`` when it is None."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    console.setFormatter(FORMAT)
    root.addHandler(console)
    _state["buffer"], _state["file"] = _Buffer(), None
    root.addHandler(_state["buffer"])
    if log_file:
        attach_log_file(log_file)
    return root


def attach_log_file(log_file):
    """Append the log to ``log_file`` from now on, starting with what was logged before."""
    root = logging.getLogger()
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
    handler.setFormatter(FORMAT)
    buffer = _state["buffer"]
    if buffer is not None:
        root.removeHandler(buffer)
        for record in buffer.records:
            handler.emit(record)
        _state["buffer"] = None
    root.addHandler(handler)
    _state["file"] = handler
    return handler


def log_file_only(message, level=logging.ERROR):
    """Write ``message`` to the log file alone (the entry point prints it to the terminal itself).
    Returns False when no log file is attached."""
    handler = _state["file"]
    if handler is None:
        return False
    record = logging.LogRecord("train", level, __file__, 0, message, None, None)
    handler.emit(record)
    handler.flush()
    return True


def count(number, noun):
    """``count(1, "epoch")`` is "1 epoch", ``count(3, "epoch")`` "3 epochs" (nouns whose plural adds an s)."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
