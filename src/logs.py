"""Logging set-up shared by the entry points: plain lines to the terminal, and to the run's log file.

The file is attached only once the run owns its output folder (after every check passed); what was
logged before is kept in memory and written first, so the file holds the whole run. It is opened for
appending (a resumed run continues the same ``train.log``), never through a symbolic link.

A write to the file that fails (a full disk, a quota) does not print logging's "--- Logging error ---"
report: the file is cut back to its last complete line (what an earlier process wrote stays as it was),
the file handler stops, and ``check_log_file()`` raises the failure as a one-line ``WriteError`` for the
entry point to end the run with.
"""
import errno
import logging
import os
import sys

from src.files import WriteError

FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
_write = os.write  # the one place the log reaches the disk (tests put a failing disk here)


class _Buffer(logging.Handler):
    """Keeps records until the log file exists."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records = []

    def emit(self, record):
        self.records.append(record)


class RunLogHandler(logging.Handler):
    """Appends whole records to a file opened without following links; on a failed write, cuts the file back
    to its last whole record, keeps the error in ``failure`` and writes nothing more."""

    def __init__(self, path):
        super().__init__(logging.INFO)
        self.path = os.path.abspath(path)
        self.failure = None
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise ValueError(f"{self.path} is a symbolic link; a run's files are never followed: remove the "
                                 f"link") from None
            raise WriteError(self.path, err) from None
        self.good_size = os.fstat(self.fd).st_size

    def emit(self, record):
        if self.failure is not None or self.fd is None:
            return
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
        except Exception:  # a bad format string in a record: logging's own report, as any handler
            self.handleError(record)
            return
        try:
            while data:
                data = data[_write(self.fd, data):]
            self.good_size = os.fstat(self.fd).st_size
        except OSError as err:
            self._fail(err)

    def _fail(self, err):
        self.failure = WriteError(self.path, err)
        try:
            os.ftruncate(self.fd, self.good_size)  # no half line; what was there before stays as it was
        except OSError:
            pass
        self.close()

    def close(self):
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None
        super().close()


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
    """Append the log to ``log_file`` from now on, starting with what was logged before; WriteError (one line)
    when that cannot be written."""
    root = logging.getLogger()
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    handler = RunLogHandler(log_file)
    handler.setFormatter(FORMAT)
    buffer = _state["buffer"]
    if buffer is not None:
        root.removeHandler(buffer)
        for record in buffer.records:
            handler.emit(record)
        _state["buffer"] = None
    root.addHandler(handler)
    _state["file"] = handler
    check_log_file()
    return handler


def check_log_file():
    """Raise the ``WriteError`` of a failed write to the log file (once the run has one), else nothing."""
    handler = _state["file"]
    if handler is not None and handler.failure is not None:
        raise handler.failure


def log_file_only(message, level=logging.ERROR):
    """Write ``message`` to the log file alone (the entry point prints it to the terminal itself).
    Returns False when no log file is attached, or it can no longer be written."""
    handler = _state["file"]
    if handler is None or handler.failure is not None:
        return False
    record = logging.LogRecord("train", level, __file__, 0, message, None, None)
    handler.handle(record)
    return handler.failure is None


def count(number, noun):
    """``count(1, "epoch")`` is "1 epoch", ``count(3, "epoch")`` "3 epochs" (nouns whose plural adds an s)."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
