"""Atomic file output: every file the project writes (checkpoints, configs, logs' JSON, exports, caches).

``atomic_output(path)`` hands out a temporary path next to ``path``. Whatever writes it (``open``,
MindSpore's checkpoint writer, ``ms.export``) writes there; only a complete, fsync'ed file replaces
``path``, by a rename, with the mode a new file gets under the user's umask (0644 under umask 022).
A failure or an interruption removes the partial file and leaves the previous
``path`` as it was. A kill -9 cannot run any clean-up: the next run removes the partial files of its
folder with ``remove_partial_files``.

A write that fails for a reason of the file system (disk full, permission denied, file too large)
raises ``WriteError``, a ``ValueError`` whose one-line message names the file.
"""
import contextlib
import errno
import hashlib
import json
import os

PARTIAL_PREFIX = ".partial-"


class WriteError(ValueError):
    """A file could not be written; the previous version of it (if any) is unchanged."""

    def __init__(self, path, err):
        reason = (err.strerror or str(err)) if isinstance(err, OSError) else str(err)
        code = f" ({errno.errorcode[err.errno]})" if isinstance(err, OSError) and err.errno in errno.errorcode else ""
        super().__init__(f"cannot write {path}: {reason}{code}; the previous file, if any, is unchanged")
        self.path = path
        self.errno = getattr(err, "errno", None)


def _fsync(path, directory=False):
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask():
    """The process's umask (reading it means setting it: put it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


@contextlib.contextmanager
def atomic_output(path):
    """``with atomic_output("run/last.ckpt") as tmp: write(tmp)``: ``path`` changes only when the block succeeds.

    The temporary name keeps ``path``'s extension (writers such as ``ms.export`` and
    ``ms.save_checkpoint`` look at it); files that a writer derives from it (MindSpore writes
    ``<stem>.tmp`` first) share its stem and are removed with it.
    """
    path = os.path.abspath(path)
    folder, name = os.path.split(path)
    stem = f"{PARTIAL_PREFIX}{os.getpid()}-{os.path.splitext(name)[0]}"
    tmp = os.path.join(folder, stem + os.path.splitext(name)[1])
    try:
        os.makedirs(folder, exist_ok=True)
        yield tmp
        if not os.path.isfile(tmp):
            raise OSError(errno.ENOENT, "the writer produced no file")
        # MindSpore's checkpoint and export writers leave their file read-only for the owner (0400)
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(folder, directory=True)
    except BaseException as err:  # also KeyboardInterrupt: never leave a partial file behind
        remove_partial_files(folder, stem)
        if isinstance(err, OSError):
            raise WriteError(path, err) from None
        raise


def remove_partial_files(folder, stem=None):
    """Delete the partial files ``atomic_output`` left in ``folder`` (all of them, or those of one ``stem``)."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in os.listdir(folder):
        if (name.startswith(PARTIAL_PREFIX) if stem is None else os.path.splitext(name)[0] == stem):
            _remove_quietly(os.path.join(folder, name))
            removed.append(name)
    return removed


def write_text_atomic(path, text):
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return path


def write_bytes_atomic(path, chunks):
    """Write ``chunks`` (bytes, or an iterable of bytes) as one file."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            for chunk in [chunks] if isinstance(chunks, (bytes, bytearray, memoryview)) else chunks:
                f.write(chunk)
    return path


def write_json_atomic(path, data):
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def file_sha256(path, what="file"):
    """SHA-256 of a file, read in chunks; a missing one is a one-line ``ValueError`` naming it as ``what``."""
    if not path or not os.path.isfile(path):
        raise ValueError(f"{what} '{path}' does not exist")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()
