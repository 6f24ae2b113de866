"""What may happen to an ``output_dir``: a new run, a continued one, or a refusal; and who owns it.

A folder "holds a run" when it has the checkpoints or the metrics a run writes. A new run there is
refused unless the config says ``overwrite: true`` (the old run's files are then removed, once the
new run has been checked) or continues it with ``resume``. These decisions read the folder only:
nothing in it changes until the entry point commits the run.

A run folder belongs to one run: ``run.json`` records the run's id when the run first commits the
folder, and every resume state carries the id of the run that wrote it. A resume state of another
run (``resume=PATH`` from elsewhere) into a folder that holds a run is refused unless
``overwrite=true``. While a run trains it holds an exclusive ``flock`` on ``run.lock`` (with its pid,
host and start time written in): a second process into the folder is refused naming the holder, and
a lock left by a killed process (the kernel releases it, the record stays) is named and taken over.
No entry the run writes or reads in its folder may be a symbolic link (files are opened without
following links, and a link is refused before anything is read, written or deleted).
"""
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, field

from src.files import WriteError, remove_partial_files, write_json_atomic

RESUME_FILE = "resume.ckpt"
RUN_ID_FILE = "run.json"
LOCK_FILE = "run.lock"
CHECKPOINTS = ("resume.ckpt", "last.ckpt", "best.ckpt", "last_ema.ckpt", "best_ema.ckpt")
# what a run writes; the first group marks a run worth protecting, config and log alone do not
RESULT_FILES = CHECKPOINTS + ("metrics.json",)
RUN_FILES = RESULT_FILES + ("config.yaml", "train.log", RUN_ID_FILE)
# every name of the folder a run opens: none of them may be a symbolic link
GUARDED_NAMES = RUN_FILES + (LOCK_FILE, "graph_reports")
RANK_DIR = re.compile(r"^rank_\d+$")


@dataclass
class RunPlan:
    """``resume_path``: the resume state to continue from (None = a new run); ``clear``: remove the old
    run's files before starting; ``run_id``: the run the folder will belong to; ``resumed_from``: the
    resume state of another run this one starts from (a fork), or None; ``notes``: what to tell the user."""

    resume_path: str = None
    clear: bool = False
    run_id: str = None
    resumed_from: dict = None
    notes: list = field(default_factory=list)


def new_run_id():
    """A readable, unique run id: creation time plus 8 random hex digits (e.g. 20261204-184512-3f9a0c1e)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


def _entries(out_dir):
    try:
        return sorted(os.listdir(out_dir))
    except FileNotFoundError:
        return []


def check_run_folder(out_dir):
    """ValueError (one line) when ``out_dir`` cannot be a run folder: a file, or an entry of the run that is a
    symbolic link (the run never writes through a link, nor deletes what one points to)."""
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"output_dir {out_dir} is a file, not a folder; choose another output_dir")
    for name in _entries(out_dir):
        path = os.path.join(out_dir, name)
        if (name in GUARDED_NAMES or RANK_DIR.match(name)) and os.path.islink(path):
            raise ValueError(f"output_dir {out_dir}: {name} is a symbolic link (to {os.readlink(path)}); a run's "
                             f"files are never followed: remove the link (nothing was read, written or deleted)")


def run_results(out_dir):
    """Names of the result files (checkpoints, metrics, rank_N folders) in ``out_dir``."""
    if not os.path.isdir(out_dir):
        return []
    return [n for n in _entries(out_dir)
            if n in RESULT_FILES or (RANK_DIR.match(n) and os.path.isdir(os.path.join(out_dir, n)))]


def read_run_id(out_dir):
    """The id recorded in ``out_dir/run.json``, or None (no record: a new folder, or a run from before ids)."""
    path = os.path.join(out_dir, RUN_ID_FILE)
    if not os.path.isfile(path) or os.path.islink(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="utf-8") as f:
            return json.load(f).get("run_id")
    except (OSError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: cannot read the run's identity ({err}); restore it or choose another "
                         f"output_dir") from None


def plan_run(out_dir, resume=None, overwrite=False, state_run_id=None):
    """Decide what the run does with ``out_dir``; ValueError (one line) when it must not touch it.

    ``state_run_id(path)``: the run id stored in a resume state (None for states from before run ids).
    """
    check_run_folder(out_dir)
    results = run_results(out_dir)
    shown = ", ".join(results[:4]) + (f" and {len(results) - 4} more" if len(results) > 4 else "")
    folder_id = read_run_id(out_dir) if results else None
    state_id = state_run_id or (lambda path: None)
    if resume == "auto":
        path = os.path.join(out_dir, RESUME_FILE)
        if os.path.isfile(path):
            return RunPlan(resume_path=path, run_id=folder_id or state_id(path) or new_run_id())
        if results and not overwrite:
            raise ValueError(f"resume=auto: {out_dir} holds a run ({shown}) but no {RESUME_FILE} to continue from; "
                             f"pass overwrite=true to replace it, or choose another output_dir")
        return RunPlan(clear=bool(results), run_id=new_run_id(),
                       notes=[f"resume=auto: no {RESUME_FILE} in {out_dir}: starting a new run"])
    if resume:
        if not os.path.isfile(resume):
            raise ValueError(f"key 'resume': resume state '{resume}' does not exist (pass a {RESUME_FILE} written by "
                             f"train.py, or resume=auto)")
        if os.path.realpath(os.path.dirname(os.path.abspath(resume))) == os.path.realpath(out_dir):
            return RunPlan(resume_path=resume, run_id=folder_id or state_id(resume) or new_run_id())
        other = state_id(resume)
        if results and folder_id and other == folder_id:  # the folder's own run, its state copied elsewhere
            return RunPlan(resume_path=resume, run_id=folder_id)
        fork = {"path": os.path.abspath(resume), "run_id": other}
        if results and not overwrite:
            raise ValueError(f"resume={resume}: output_dir {out_dir} holds another run (run id {folder_id or 'not recorded'}"
                             f"; {shown}) and the resume state belongs to run {other or 'unknown'}; continue that "
                             f"run in its own folder (output_dir={os.path.dirname(os.path.abspath(resume))}), start "
                             f"from it in an empty output_dir, or pass overwrite=true to replace {out_dir}")
        notes = [f"overwrite=true: replacing the run in {out_dir}"] if results else []
        return RunPlan(resume_path=resume, clear=bool(results), run_id=new_run_id(), resumed_from=fork,
                       notes=notes + [f"a new run from the resume state {resume} (run {other or 'unknown'})"])
    if results and not overwrite:
        raise ValueError(f"output_dir {out_dir} already holds a run ({shown}); continue it with resume=auto, "
                         f"replace it with overwrite=true, or choose another output_dir")
    return RunPlan(clear=bool(results), run_id=new_run_id(),
                   notes=[f"overwrite=true: replacing the run in {out_dir}"] if results else [])


def record_run_identity(out_dir, plan):
    """Write ``run.json`` when the folder has no record of ``plan.run_id`` (a new run, or a run from before ids)."""
    if read_run_id(out_dir) == plan.run_id:
        return None
    return write_json_atomic(os.path.join(out_dir, RUN_ID_FILE), {
        "run_id": plan.run_id, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "host": socket.gethostname(),
        "resumed_from": plan.resumed_from})


def clear_run(out_dir):
    """Remove what a previous run wrote in ``out_dir`` (its files and rank_N folders), nothing else.

    Everything is checked before anything is deleted: a symbolic link, or a run file that is a folder,
    is a ValueError and the folder is left as it was.
    """
    if not os.path.isdir(out_dir):
        return
    check_run_folder(out_dir)
    files, folders = [], []
    for name in _entries(out_dir):
        path = os.path.join(out_dir, name)
        if name in RUN_FILES:
            if not os.path.isfile(path):
                raise ValueError(f"overwrite=true: {path} is not a regular file; remove it yourself (nothing was "
                                 f"deleted)")
            files.append(path)
        elif RANK_DIR.match(name) and os.path.isdir(path):
            for base, dirs, names in os.walk(path):
                links = [n for n in dirs + names if os.path.islink(os.path.join(base, n))]
                if links:
                    raise ValueError(f"overwrite=true: {os.path.join(base, links[0])} is a symbolic link; remove it "
                                     f"yourself (nothing was deleted)")
            folders.append(path)
    for path in files:
        os.remove(path)
    for path in folders:
        shutil.rmtree(path)
    remove_partial_files(out_dir)


# ----------------------------------------------------------------------------- the run's lock

def _holder_text(record):
    if not record:
        return "a process"
    return (f"{record.get('program', 'a process')} pid {record.get('pid')} on {record.get('host')} "
            f"(started {record.get('started')})")


def _read_record(fd):
    try:
        data = os.pread(fd, 4096, 0)
        return json.loads(data) if data.strip() else None
    except (OSError, ValueError):
        return None


def _in_use(out_dir, path, record):
    pid = record.get("pid") if record else None
    stop = f"stop it first (kill -INT {pid} saves a resume point), " if pid else ""
    return ValueError(f"output_dir {out_dir} is in use: {_holder_text(record)} holds {path} and is still running; "
                      f"wait for it to end, {stop}or choose another output_dir")


def _open_lock(path, flags):
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ValueError(f"{path} is a symbolic link; a run's files are never followed: remove the link") from None
        raise WriteError(path, err) from None  # a full disk, a read-only folder: one line naming the file


def check_not_in_use(out_dir):
    """ValueError naming the holder when a live process holds ``out_dir``'s lock; else the record a dead
    holder left (dict: pid, host, started; a stale lock), or None. Creates nothing."""
    path = os.path.join(out_dir, LOCK_FILE)
    if not os.path.lexists(path):
        return None
    fd = _open_lock(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(out_dir, path, _read_record(fd)) from None
        return _read_record(fd)
    finally:
        os.close(fd)  # also releases the probe's lock


def stale_lock_note(path, record):
    return (f"{path}: {_holder_text(record)} ended without releasing the run (killed, or its machine went down); "
            f"this run takes the folder over")


class RunLock:
    """The exclusive lock of a run on its folder, held from ``acquire`` to ``release`` (or the process's end:
    the kernel releases a ``flock`` when its holder dies; the record written in stays, so the next run can
    name it). ``stale``: the record a dead holder left, or None."""

    def __init__(self, path, fd, stale):
        self.path, self.fd, self.stale = path, fd, stale

    @classmethod
    def acquire(cls, out_dir, program="python"):
        """Take the lock of ``out_dir`` (creating ``run.lock``); ValueError naming the holder when it is taken."""
        path = os.path.join(out_dir, LOCK_FILE)
        os.makedirs(out_dir, exist_ok=True)
        fd = _open_lock(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = _read_record(fd)
            os.close(fd)
            raise _in_use(out_dir, path, record) from None
        stale = _read_record(fd)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "program": program}
        try:  # the record only names the holder: a full disk must not stop the run from holding its lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        except OSError:
            pass
        return cls(path, fd, stale)

    def release(self):
        """Mark the lock released (an empty record) and let it go; a later run finds nothing stale."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
