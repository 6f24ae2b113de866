"""Checkpoints: atomic writes with a CRC32, and loads that say exactly what does not fit.

Every checkpoint this project writes carries MindSpore's CRC32 trailer (``crc_check=True``), and every
read verifies it when the file has one: a damaged file is refused naming it instead of loading
changed weights. Files without the trailer (converted teachers, older runs) load as they are.
"""
import binascii
import contextlib
import logging
import os

import mindspore as ms

from src.files import atomic_output

# MindSpore's checkpoint writer ends a CRC'd file with b"crc_num" and the CRC32 in 10 big-endian bytes.
CRC_MARKER = b"crc_num"
CRC_TRAILER = len(CRC_MARKER) + 10


@contextlib.contextmanager
def _quiet_mindspore():
    """MindSpore logs its own multi-line report of a failed save/load; ours is the one-line error."""
    from mindspore.log import _get_logger

    logger = _get_logger()
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def save_atomic(params, path, append_dict=None):
    """Write a checkpoint of ``params`` (a Cell or a list of Parameters / dicts) to ``path`` atomically.

    A crash, a full disk or a kill mid-write leaves the previous file intact (see ``src.files``).
    """
    with atomic_output(path) as tmp, _quiet_mindspore():
        ms.save_checkpoint(params, tmp, append_dict=append_dict, crc_check=True)
    return os.path.abspath(path)


def verify_checkpoint(path):
    """True when ``path`` has a CRC32 trailer that matches; False when it has none; ValueError when it
    does not match (the file changed after it was written)."""
    size = os.path.getsize(path)
    if size <= CRC_TRAILER:
        return False
    with open(path, "rb") as f:
        f.seek(size - CRC_TRAILER)
        trailer = f.read()
        if trailer[:-10] != CRC_MARKER:
            return False
        f.seek(0)
        crc, left = 0, size - CRC_TRAILER
        while left > 0:  # in chunks: teachers can be hundreds of MB
            chunk = f.read(min(left, 1 << 24))
            crc = binascii.crc32(chunk, crc)
            left -= len(chunk)
    if crc != int.from_bytes(trailer[-10:], "big"):
        raise ValueError(f"checkpoint '{path}' is corrupt: its CRC32 does not match its content (the file was "
                         f"damaged or changed after it was written); use another copy or an earlier checkpoint")
    return True


def read_checkpoint(path):
    """Parameter dict of a checkpoint file; ValueError naming the file when missing, damaged or unreadable."""
    if not path or not os.path.isfile(path):
        raise ValueError(f"checkpoint '{path}' does not exist (expected a MindSpore .ckpt file)")
    try:
        verify_checkpoint(path)
    except OSError as err:
        raise ValueError(f"checkpoint '{path}' cannot be read: {err.strerror or err}") from None
    try:
        with _quiet_mindspore():
            return ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises several error types for truncated / foreign files
        raise ValueError(f"checkpoint '{path}' is corrupt or not a MindSpore checkpoint: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def load_into(net, param_dict, source, what="model", allow_missing=()):
    """Load ``param_dict`` into ``net`` only when names and shapes match one to one.

    ``source`` names the file in errors; a head of the wrong size is reported as a num_classes mismatch.
    """
    expected = {p.name: p for p in net.get_parameters()}
    missing = [k for k in expected if k not in param_dict and not any(k.startswith(a) for a in allow_missing)]
    unexpected = [k for k in param_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise ValueError(f"checkpoint '{source}' does not match the {what} ({type(net).__name__}): "
                         f"{'; '.join(parts)} parameters; is it a checkpoint of another architecture?")
    for name, param in expected.items():
        if name not in param_dict:
            continue
        got = tuple(param_dict[name].shape)
        if got != tuple(param.shape):
            hint = ""
            if getattr(net, "num_classes", None) is not None and len(got) >= 1 and \
                    int(net.num_classes) in tuple(param.shape) and got[0] != param.shape[0]:
                hint = f" (the checkpoint has {got[0]} classes, the config says num_classes={net.num_classes})"
            elif len(got) == 4 and len(param.shape) == 4 and got[1] != param.shape[1] and got[1] in (1, 3):
                hint = (f" (the checkpoint takes {got[1]}-channel images, the config says "
                        f"in_channels={param.shape[1]})")
            raise ValueError(f"checkpoint '{source}': parameter '{name}' has shape {got}, "
                             f"the {what} expects {tuple(param.shape)}{hint}")
    ms.load_param_into_net(net, param_dict, strict_load=True)
    return net


def load_model_checkpoint(net, path, what="model"):
    """Load a checkpoint written by train.py (student alone) or a converted teacher into ``net``.

    Weights trained at another input size are first adapted by the model (e.g. a resampled position
    embedding), or refused with the model's reason."""
    params = read_checkpoint(path)
    if "meta.config" in params and "epoch" in params:  # train.py's resume.ckpt: the whole training state
        folder = os.path.dirname(os.path.abspath(path))
        raise ValueError(f"checkpoint '{path}' is a resume point (student, branches and optimizer state, for "
                         f"train.py resume=...), not a model checkpoint: use {os.path.join(folder, 'best.ckpt')} or "
                         f"{os.path.join(folder, 'last.ckpt')} of the same run")
    params = {k: v for k, v in params.items() if not k.startswith(("epoch", "step", "meta."))}
    if hasattr(net, "adapt_checkpoint"):
        params = net.adapt_checkpoint(params, path)
    return load_into(net, params, path, what)
