"""Read a PyTorch state dict from .pth (needs PyTorch) or .safetensors (NumPy only) into NumPy arrays."""
import argparse
import json
import os

import numpy as np

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".tar")
SAFETENSORS_SUFFIXES = (".safetensors",)
# Keys under which training scripts nest the state dict (timm: state_dict, DeiT / CycleMLP: model).
WRAPPER_KEYS = ("model", "state_dict", "module")
DATA_PARALLEL_PREFIX = "module."
TORCH_MISSING = "reading .pth needs PyTorch: pip install torch==2.13.0 (CPU)"


def read_state_dict(path):
    """``{name: float32 / integer ndarray}`` of the checkpoint at ``path``, unwrapped and prefix-stripped.

    Raises ValueError naming the file when it is missing, of an unknown kind, unreadable, or holds no
    state dict; a .pth file without PyTorch installed raises ValueError(TORCH_MISSING).
    """
    if not path or not os.path.isfile(path):
        raise ValueError(f"source checkpoint '{path}' does not exist")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in SAFETENSORS_SUFFIXES:
        raw = _read_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        raw = _read_torch(path)
    else:
        raise ValueError(f"source checkpoint '{path}' has suffix '{suffix}'; allowed: "
                         f"{', '.join(TORCH_SUFFIXES + SAFETENSORS_SUFFIXES)}")
    return unwrap_state_dict(raw, path)


def _read_torch(path):
    try:
        import torch  # test-time / conversion-time dependency only, never needed for training
    except ImportError:
        raise ValueError(f"{TORCH_MISSING} (to read '{path}'), or convert it to .safetensors elsewhere") from None
    try:
        # weights_only refuses arbitrary pickled code; training scripts also pickle their argparse Namespace.
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for foreign / truncated files
        if "weights only load failed" in str(exc).lower():
            raise ValueError(f"'{path}' pickles Python objects besides tensors (a whole model?), which we do not "
                             "unpickle; save model.state_dict() with torch.save and convert that") from None
        raise ValueError(f"cannot read '{path}' as a PyTorch checkpoint: {_first_line(exc)}") from None
    return _tensors_to_numpy(obj, torch)


def _tensors_to_numpy(obj, torch):
    """Replace every torch tensor in a nested dict by a NumPy array (floats as float32)."""
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu()
        if tensor.is_floating_point():
            tensor = tensor.float()  # bfloat16 / float16 have no (or lossy) NumPy twins: widen first
        return tensor.numpy()
    if isinstance(obj, dict):
        return {k: _tensors_to_numpy(v, torch) for k, v in obj.items()}
    return obj


def _read_safetensors(path):
    try:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
    except ImportError:
        raise ValueError(f"reading .safetensors needs the safetensors package: pip install safetensors "
                         f"(to read '{path}')") from None

    try:
        tensors = load_file(path)
    except TypeError:  # NumPy has no bfloat16: read the raw file instead
        tensors = _read_safetensors_raw(path)
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"cannot read '{path}' as a safetensors file: {_first_line(exc)}") from None
    return {k: v.astype(np.float32) if _is_floating(v.dtype) else v for k, v in tensors.items()}


def _is_floating(dtype):
    # bfloat16 (from ml_dtypes, when some library registered it with NumPy) has kind 'V', not 'f'
    return dtype.kind == "f" or dtype.name == "bfloat16"


# safetensors dtype tag -> NumPy dtype; BF16 is read as uint16 and widened by hand.
_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
                       "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
                       "BOOL": np.bool_}


def _read_safetensors_raw(path):
    """safetensors file -> NumPy, by its documented layout (u64 header length, JSON header, data)."""
    with open(path, "rb") as f:
        data = f.read()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + size:]
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"'{path}': tensor '{name}' has dtype {info['dtype']}, which we cannot read")
        array = np.frombuffer(body[begin:end], dtype=_SAFETENSORS_DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        out[name] = array.reshape(info["shape"])
    return out


def _is_state_dict(obj):
    return isinstance(obj, dict) and obj and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())


def unwrap_state_dict(obj, source):
    """The flat ``{name: ndarray}`` inside ``obj`` (nested under model / state_dict / module at most 3 deep),
    with DataParallel's ``module.`` prefix removed."""
    for _ in range(len(WRAPPER_KEYS) + 1):
        if _is_state_dict(obj):
            break
        key = next((k for k in WRAPPER_KEYS if isinstance(obj, dict) and isinstance(obj.get(k), dict)), None)
        if key is None:
            found = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"'{source}' holds no state dict of tensors: found {found}; expected a dict of "
                             f"tensors, possibly under one of {', '.join(WRAPPER_KEYS)}")
        obj = obj[key]
    else:
        raise ValueError(f"'{source}' holds no state dict of tensors within {len(WRAPPER_KEYS)} levels of nesting")
    out = {}
    for name, value in obj.items():
        name = name[len(DATA_PARALLEL_PREFIX):] if name.startswith(DATA_PARALLEL_PREFIX) else name
        if name in out:
            raise ValueError(f"'{source}' has tensor '{name}' both with and without the "
                             f"'{DATA_PARALLEL_PREFIX}' prefix")
        out[name] = value
    return out


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
