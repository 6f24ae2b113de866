"""Checkpoints: atomic writes, and loads that say exactly what does not fit."""
import os
import tempfile

import mindspore as ms


def save_atomic(params, path, append_dict=None):
    """Write a checkpoint of ``params`` (a Cell or a list of Parameters / dicts) to ``path`` atomically.

    A crash mid-write leaves the previous file intact: we write a temp file next to it, then rename.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".ckpt", dir=directory)
    os.close(fd)
    try:
        ms.save_checkpoint(params, tmp, append_dict=append_dict)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_checkpoint(path):
    """Parameter dict of a checkpoint file; ValueError naming the file when missing or unreadable."""
    if not path or not os.path.isfile(path):
        raise ValueError(f"checkpoint '{path}' does not exist (expected a MindSpore .ckpt file)")
    try:
        return ms.load_checkpoint(path)
    except Exception as exc:  # MindSpore raises several error types for truncated / foreign files
        raise ValueError(f"checkpoint '{path}' is corrupt or not a MindSpore checkpoint: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def strip_prefix(param_dict, prefix):
    """Entries of ``param_dict`` under ``prefix`` (e.g. 'student.'), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in param_dict.items() if k.startswith(prefix)}


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
            raise ValueError(f"checkpoint '{source}': parameter '{name}' has shape {got}, "
                             f"the {what} expects {tuple(param.shape)}{hint}")
    ms.load_param_into_net(net, param_dict, strict_load=True)
    return net


def load_model_checkpoint(net, path, what="model"):
    """Load a checkpoint written by train.py (student alone) or a converted teacher into ``net``.

    Weights trained at another input size are first adapted by the model (e.g. a resampled position
    embedding), or refused with the model's reason."""
    params = read_checkpoint(path)
    params = {k: v for k, v in params.items() if not k.startswith(("epoch", "step", "meta."))}
    if hasattr(net, "adapt_checkpoint"):
        params = net.adapt_checkpoint(params, path)
    return load_into(net, params, path, what)
