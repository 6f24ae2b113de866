"""Flat, typed run configuration: defaults <- YAML file (with ``base:`` chains) <- command line.

Every key lives in ``KEYS`` with its type and default. A YAML file may name ``base: other.yaml``
(a path relative to the file, or a list of them); the base is loaded first and the child's keys win.
Command-line overrides come last. The entry points own the command line and pass its words in; they call::

    parser = build_arg_parser("Train OFA-KD")        # argparse: --config plus one option per key of KEYS
    parser.add_argument("--checkpoint")               # the entry point's own options
    args, cfg = config_from_args(argv, parser)

An entry point that uses only some keys (eval, export) passes ``keys=`` so that its ``--help`` lists
those and its command line refuses the others. Overrides are ``key=value``, ``--key value``,
``--key=value``, ``--key v1 v2`` (list keys) or a bare ``--flag`` (bool keys); ``-`` and ``_`` are
interchangeable in names, values are parsed as YAML. An unknown key, a value of the wrong type or a
missing required key raises ``ValueError`` with one line naming the key, where it came from and what
is allowed.

After validation the dataset-dependent keys are filled in: ``num_classes`` (from the dataset; for
``imagefolder`` the class folders under ``data_dir/train`` are counted) and ``mean``/``std`` (per-dataset defaults, 0..1 scale,
one value per input channel; the grayscale value of RGB defaults when ``in_channels`` is 1).
"""
import argparse
import difflib
import math
import os
import re
from dataclasses import dataclass

import yaml

from src.files import write_text_atomic

DEVICE_TARGETS = ("auto", "CPU", "GPU", "Ascend")
MODES = ("graph", "pynative")
DATASETS = ("imagefolder", "cifar100", "cifar10", "fashion_mnist", "mnist", "fake")
# the distillation methods (key 'distiller') and their classes in src/distill/distillers.py
DISTILLERS = {"ofa": "OFADistiller", "kd": "KDDistiller", "dist": "DISTDistiller", "dkd": "DKDDistiller",
              "rsd": "RSDDistiller", "ofa+rsd": "OFARSDDistiller", "none": "StudentOnly"}
OPTIMIZERS = ("sgd", "adamw", "lamb")
SCHEDULERS = ("cosine", "step")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")
AMP_LEVELS = ("auto", "O0", "O1", "O2", "O3")
LOSS_SCALE_TYPES = ("auto", "none", "static", "dynamic")
AUTO_AUGMENT_PREFIXES = ("randaug", "rand", "autoaug", "3a", "trivialaugwide", "augmix")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# num_classes=None means "count the class folders" (under data_dir/train).
DATASET_INFO = {
    "imagefolder": dict(num_classes=None, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "cifar100": dict(num_classes=100, mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
    "cifar10": dict(num_classes=10, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "fashion_mnist": dict(num_classes=10, mean=(0.2860,), std=(0.3530,)),
    "mnist": dict(num_classes=10, mean=(0.1307,), std=(0.3081,)),
    "fake": dict(num_classes=1000, mean=IMAGENET_MEAN, std=IMAGENET_STD),
}


@dataclass(frozen=True)
class Key:
    """One config key: ``kind`` is int|float|bool|str|int_list|float_list."""

    kind: str
    default: object
    help: str
    choices: tuple = ()
    nullable: bool = False
    length: int = 0  # fixed list length, 0 = any (at least one element)


def _k(kind, default, help, **kw):
    return Key(kind, default, help, **kw)


KEYS = {
    # --- run / device
    "device_target": _k("str", "auto", "backend to run on; auto = the first of Ascend, GPU, CPU that the installed "
                        "MindSpore can use", choices=DEVICE_TARGETS),
    "mode": _k("str", "graph", "MindSpore execution mode", choices=MODES),
    "distribute": _k("bool", False, "data-parallel over the ranks started by msrun / a rank table"),
    "seed": _k("int", 42, "random seed (weights, shuffling, augmentation)"),
    "output_dir": _k("str", "outputs", "folder for checkpoints, logs and the resolved config"),
    "rank_checkpoints": _k("bool", False, "also write every rank's last.ckpt to output_dir/rank_N (checks sync)"),
    "resume": _k("str", None, "continue a run: auto (output_dir/resume.ckpt, if any) or a resume.ckpt path; "
                 "null = a new run", nullable=True),
    "overwrite": _k("bool", False, "replace the run already in output_dir (otherwise a new run there is refused)"),
    "log_interval": _k("int", 50, "steps between log lines (and between reads of the device's loss sums)"),
    "save_every_steps": _k("int", 0, "steps between mid-epoch resume points (0 = at epoch ends only)"),
    "val_every": _k("int", 1, "epochs between evaluations on the val split"),
    # --- data
    "dataset": _k("str", "imagefolder", "dataset reader", choices=DATASETS),
    "data_dir": _k("str", None, "dataset root (required unless dataset is fake)", nullable=True),
    "image_size": _k("int", 224, "network input size; low-resolution sets are resized to it"),
    "in_channels": _k("int", 3, "network input channels: 3 (RGB; grayscale sets are repeated), or 1 (images made gray)", choices=(1, 3)),
    "num_classes": _k("int", None, "classes; null = the dataset's (imagefolder: its class folders counted)", nullable=True),
    "batch_size": _k("int", 128, "batch size per device"),
    "val_batch_size": _k("int", None, "val batch size per device, null = batch_size", nullable=True),
    "num_workers": _k("int", 4, "parallel workers of the data pipeline"),
    "python_multiprocessing": _k("bool", False, "run the Python transforms of the map (RandAugment, RandomErasing) in worker processes (ImageNet speed)"),
    "train_subset": _k("int", 0, "train on a fixed, seeded, class-balanced subset of N images (0 = all)"),
    "val_subset": _k("int", 0, "evaluate on a fixed, seeded, class-balanced subset of N images (0 = all)"),
    "fake_samples": _k("int", 1024, "images per split of the fake dataset"),
    "skip_corrupt": _k("bool", False, "replace unreadable images by the next one with a logged warning"),
    # --- augmentation (train split)
    "hflip": _k("float", 0.5, "horizontal flip probability"),
    "scale": _k("float_list", [0.08, 1.0], "RandomResizedCrop area range (min, max)", length=2),
    "ratio": _k("float_list", [0.75, 1.3333333], "RandomResizedCrop aspect-ratio range (min, max)", length=2),
    "color_jitter": _k("float", 0.4, "brightness/contrast/saturation jitter (0 = off; unused with auto_augment)"),
    "auto_augment": _k("str", None, "e.g. randaug-m9-mstd0.5-inc1, autoaug, augmix; null = off", nullable=True),
    "re_prob": _k("float", 0.0, "random erasing probability"),
    "re_mode": _k("str", "pixel", "random erasing fill: pixel (normal noise per pixel, timm's train.py default), "
                  "rand (one normal value per channel) or const (zeros)", choices=("pixel", "rand", "const")),
    "mixup": _k("float", 0.0, "mixup alpha (0 = off)"),
    "cutmix": _k("float", 0.0, "cutmix alpha (0 = off)"),
    "mixup_prob": _k("float", 1.0, "probability of mixing a batch when mixup or cutmix is on"),
    "mixup_switch_prob": _k("float", 0.5, "probability of cutmix instead of mixup when both are on"),
    "label_smoothing": _k("float", 0.1, "label smoothing (in the soft labels when mixup/cutmix is on)"),
    "interpolation": _k("str", "bilinear", "resize interpolation", choices=INTERPOLATIONS),
    "crop_pct": _k("float", 0.875, "val: resize to image_size / crop_pct, then center-crop image_size"),
    "mean": _k("float_list", None, "normalisation mean (0..1 scale); null = the dataset's", nullable=True),
    "std": _k("float_list", None, "normalisation std (0..1 scale); null = the dataset's", nullable=True),
    # --- models and distillation
    "student": _k("str", None, "student model name (required)", nullable=True),
    "teacher": _k("str", None, "teacher model name (required unless distiller is none)", nullable=True),
    "student_ckpt": _k("str", None, "MindSpore checkpoint to initialise the student from (e.g. converted timm "
                       "weights); a run continued with resume takes the student from the resume state", nullable=True),
    "teacher_ckpt": _k("str", None, "MindSpore checkpoint of the teacher", nullable=True),
    "distiller": _k("str", "ofa", "distillation method; none trains the student alone", choices=tuple(DISTILLERS)),
    "stages": _k("int_list", [1, 2, 3, 4], "student stages that get an OFA exit branch"),
    "eps": _k("float_list", [1.0], "OFA exponent: one value, or one per stage plus one for the final logits"),
    "temperature": _k("float", 1.0, "distillation temperature (OFA, KD, DKD, and DIST's tau)"),
    "loss_weights": _k("float_list", [1.0, 1.0], "weights of the ground-truth term and of the distillation term on "
                       "the final logits (KD's, DIST's, DKD's, OFA's ofa_final); a third entry is the old spelling "
                       "of ofa_branch_weight, read only when that key is null"),
    "ofa_branch_weight": _k("float", None, "weight of OFA's exit-branch terms (ofa_branches); null = the third "
                            "entry of loss_weights if it has one, else 1", nullable=True),
    "dist_beta": _k("float", 1.0, "DIST inter-class weight"),
    "dist_gamma": _k("float", 1.0, "DIST intra-class weight"),
    "dkd_alpha": _k("float", 1.0, "DKD target-class weight"),
    "dkd_beta": _k("float", 2.0, "DKD non-target-class weight"),
    "drop_path_rate": _k("float", 0.0, "student stochastic depth rate"),
    # --- optimisation
    "epochs": _k("int", 100, "training epochs"),
    "opt": _k("str", "sgd", "optimizer", choices=OPTIMIZERS),
    "lr": _k("float", 0.1, "peak learning rate"),
    "min_lr": _k("float", 1e-6, "final learning rate of the cosine schedule"),
    "weight_decay": _k("float", 1e-4, "weight decay (skips biases and 1-D parameters)"),
    "momentum": _k("float", 0.9, "SGD momentum"),
    "nesterov": _k("bool", True, "SGD Nesterov momentum"),
    "warmup_epochs": _k("int", 3, "linear warm-up epochs"),
    "warmup_lr": _k("float", 1e-4, "learning rate at the start of the warm-up"),
    "scheduler": _k("str", "step", "learning-rate schedule after warm-up", choices=SCHEDULERS),
    "lr_per_epoch": _k("bool", False, "set the learning rate once per epoch, constant within it, warm-up "
                       "included (timm's per-epoch schedulers, the paper's runs); false = it moves every step"),
    "decay_epochs": _k("int", 30, "step schedule: epochs between decays"),
    "decay_rate": _k("float", 0.1, "step schedule: factor per decay"),
    "clip_grad": _k("float", 0.0, "global-norm gradient clipping of student + branches (0 = off)"),
    "ema": _k("bool", False, "keep an exponential moving average of the student"),
    "ema_decay": _k("float", 0.9998, "EMA decay per step"),
    "amp_level": _k("str", "auto", "mixed precision: auto = O0 (float32) on CPU, O1 (float16 where safe, as "
                    "PyTorch autocast) on GPU/Ascend", choices=AMP_LEVELS),
    "loss_scale_type": _k("str", "auto", "loss scaling: auto = dynamic under mixed precision, none in float32",
                          choices=LOSS_SCALE_TYPES),
    "loss_scale": _k("float", 65536.0, "static loss scale, or the initial dynamic one"),
    "loss_scale_window": _k("int", 2000, "dynamic loss scale: overflow-free steps before it doubles"),
    # --- RSD (distiller rsd or ofa+rsd)
    "rsd_weight": _k("float", 0.1, "RSD: weight of the redundancy-suppression term"),
    "rsd_kappa": _k("float", 0.01, "RSD: weight of the off-diagonal (decorrelation) entries"),
    "rsd_gamma": _k("int", 2, "RSD: projector hidden width = rsd_gamma x student feature width"),
    # --- teacher-output cache (tools/cache_teacher.py, docs/teacher_cache.md)
    "teacher_cache": _k("str", None, "train from this teacher-output cache: replay its views, build no teacher",
                        nullable=True),
    "teacher_cache_approx": _k("bool", False, "allow photometric/mixing augmentation with a cache (teacher outputs "
                                              "of the cropped/flipped view only)"),
    "teacher_cache_strict": _k("bool", False, "refuse a cache with fewer views than epochs (no view repeats)"),
}

DEFAULTS = {name: key.default for name, key in KEYS.items()}


class Config(dict):
    """A validated flat config: a dict whose keys can also be read as attributes (``cfg.lr``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no config key '{name}'") from None

    def __setattr__(self, name, value):
        if name not in KEYS:
            raise AttributeError(f"no config key '{name}'")
        self[name] = value

    def to_dict(self):
        return {name: self[name] for name in KEYS if name in self}


# ----------------------------------------------------------------------------- value checking

def _unknown_key(name, where):
    hint = difflib.get_close_matches(name, KEYS, n=1)
    tip = f" (did you mean '{hint[0]}'?)" if hint else ""
    return ValueError(f"{where}: unknown config key '{name}'{tip}")


def _expect(name, where, what, value):
    return ValueError(f"{where}: key '{name}' expects {what}, got {value!r}")


def _to_int(name, where, value):
    if isinstance(value, bool):
        raise _expect(name, where, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _expect(name, where, "an integer", value)


def _to_float(name, where, value):
    if isinstance(value, bool):
        raise _expect(name, where, "a number", value)
    if isinstance(value, (int, float)):
        value = float(value)
    elif isinstance(value, str):
        # PyYAML reads '1e-3' (no dot) as a string.
        try:
            value = float(value.strip())
        except ValueError:
            raise _expect(name, where, "a number", value) from None
    else:
        raise _expect(name, where, "a number", value)
    if not math.isfinite(value):
        raise _expect(name, where, "a finite number", value)
    return value


def _to_list(name, where, key, value):
    convert = _to_int if key.kind == "int_list" else _to_float
    what = "a list of " + ("integers" if key.kind == "int_list" else "numbers")
    if key.length:
        what += f" of length {key.length}"
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        value = [part for part in text.replace(",", " ").split()]
    elif isinstance(value, tuple):
        value = list(value)
    elif not isinstance(value, list):
        value = [value]
    if not value or (key.length and len(value) != key.length):
        raise _expect(name, where, what, value)
    try:
        return [convert(name, where, item) for item in value]
    except ValueError:
        raise _expect(name, where, what, value) from None


def coerce_value(name, value, where="config"):
    """Check one value against ``KEYS[name]`` and return it in its canonical type."""
    if name not in KEYS:
        raise _unknown_key(name, where)
    key = KEYS[name]
    if key.nullable and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))):
        return None
    if value is None:
        raise _expect(name, where, f"a {key.kind.replace('_', ' ')} (it cannot be null)", value)
    if key.kind == "int":
        value = _to_int(name, where, value)
    elif key.kind == "float":
        value = _to_float(name, where, value)
    elif key.kind == "bool":
        if not isinstance(value, bool):
            raise _expect(name, where, "true or false", value)
    elif key.kind == "str":
        if not isinstance(value, str):
            raise _expect(name, where, "a string", value)
    else:
        value = _to_list(name, where, key, value)
    if key.choices:
        matches = [c for c in key.choices if str(c).lower() == str(value).lower()]
        if not matches:
            raise _expect(name, where, "one of " + "|".join(str(c) for c in key.choices), value)
        value = matches[0]
    return value


# ----------------------------------------------------------------------------- YAML loading

def _read_yaml(path, chain):
    path = os.path.abspath(path)
    if path in chain:
        raise ValueError(f"{path}: 'base' chain loops back to itself ({' -> '.join(chain + [path])})")
    if not os.path.isfile(path):
        where = f" (base of {chain[-1]})" if chain else ""
        raise ValueError(f"config file not found: {path}{where}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not a UTF-8 text file (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                         f"a config is a YAML text file") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror or err})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys at the top level, got {type(data).__name__}")
    merged = {}  # key -> (value, where)
    bases = data.pop("base", None)
    if bases is not None:
        for base in [bases] if isinstance(bases, str) else bases:
            if not isinstance(base, str):
                raise ValueError(f"{path}: key 'base' expects a path or a list of paths, got {bases!r}")
            base_path = os.path.join(os.path.dirname(path), base)
            merged.update(_read_yaml(base_path, chain + [path]))
    for name, value in data.items():
        name = str(name)
        if name not in KEYS:
            raise _unknown_key(name, path)
        if isinstance(value, dict):
            raise _expect(name, path, "a plain value (configs are flat)", value)
        merged[name] = (value, path)
    return merged


def load_config(path=None, overrides=None, for_training=True):
    """Defaults <- YAML ``path`` (and its bases) <- ``overrides``; returns a validated ``Config``.

    ``overrides`` is a dict, or a list of command-line words (see ``parse_overrides``).
    ``for_training=False`` skips the keys only a training run requires (teacher, data_dir): eval and
    export check what they need themselves.
    """
    raw = {name: (default, "defaults") for name, default in DEFAULTS.items()}
    if path is not None:
        raw.update(_read_yaml(path, []))
    if overrides:
        if not isinstance(overrides, dict):
            overrides = parse_overrides(list(overrides))
        for name, value in overrides.items():
            if name not in KEYS:
                raise _unknown_key(name, "command line")
            raw[name] = (value, "command line")
    values = {name: coerce_value(name, value, where) for name, (value, where) in raw.items()}
    where = {name: w for name, (_, w) in raw.items()}
    return validate_config(values, where, origin=path or "config", for_training=for_training)


# ----------------------------------------------------------------------------- cross-key rules

def _fail(name, where, message):
    raise ValueError(f"{where.get(name, 'config')}: key '{name}' {message}")


# ITU-R BT.601 luma weights: how a dataset's RGB statistics become those of its grayscale version
LUMA = (0.299, 0.587, 0.114)


def _per_channel(name, values, channels, where, default=False):
    if len(values) == channels:
        return [float(v) for v in values]
    if len(values) == 1:
        return [float(values[0])] * channels
    if channels == 1 and len(set(values)) == 1:
        return [float(values[0])]
    if channels == 1 and default and len(values) == 3:
        return [float(sum(w * v for w, v in zip(LUMA, values)))]
    _fail(name, where, f"needs 1 or {channels} values (in_channels={channels}), got {values}")


def count_class_folders(data_dir):
    """Class folders of an image-folder dataset: sub-folders of ``data_dir/train`` (else ``val``), hidden ones
    not counted, as ``src/data/folder.py`` reads them; 0 when there is none."""
    for split in ("train", "val"):
        folder = os.path.join(data_dir or "", split)
        if data_dir and os.path.isdir(folder):
            return sum(1 for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    return 0


def validate_config(values, where=None, origin="config", for_training=True):
    """Range and cross-key checks; fills dataset defaults. ``values`` must hold every key.

    ``where`` maps a key to the file (or "command line") that set it; ``origin`` names the
    config as a whole in the message about a missing required key.
    """
    where = {name: (origin if w == "defaults" else w) for name, w in (where or {}).items()}
    cfg = Config({name: values[name] for name in KEYS})
    dataset = cfg["dataset"]

    def require(name, why):
        if cfg[name] is None:
            raise ValueError(f"{where.get(name, origin)}: required key '{name}' is missing ({why})")

    if for_training:
        require("student", "the model to train, e.g. resnet18")
        if dataset != "fake":
            require("data_dir", f"the root folder of the {dataset} dataset")
        if cfg["distiller"] != "none":
            require("teacher", f"distiller '{cfg['distiller']}' needs a teacher model; use distiller=none to train "
                               f"alone")

    for name in ("image_size", "batch_size", "num_workers", "epochs", "val_every", "log_interval",
                 "fake_samples", "decay_epochs", "loss_scale_window"):
        if cfg[name] < 1:
            _fail(name, where, f"must be a positive integer, got {cfg[name]}")
    for name in ("train_subset", "val_subset", "warmup_epochs", "save_every_steps"):
        if cfg[name] < 0:
            _fail(name, where, f"must be >= 0, got {cfg[name]}")
    for name in ("val_batch_size", "num_classes"):
        if cfg[name] is not None and cfg[name] < 1:
            _fail(name, where, f"must be a positive integer or null, got {cfg[name]}")
    for name in ("hflip", "re_prob", "mixup_prob", "mixup_switch_prob", "ema_decay", "momentum", "drop_path_rate",
                 "decay_rate"):
        if not 0.0 <= cfg[name] <= 1.0:
            _fail(name, where, f"must be in [0, 1], got {cfg[name]}")
    if not 0.0 <= cfg["label_smoothing"] < 1.0:
        _fail("label_smoothing", where, f"must be in [0, 1), got {cfg['label_smoothing']}")
    for name in ("color_jitter", "mixup", "cutmix", "lr", "min_lr", "warmup_lr", "weight_decay", "clip_grad",
                 "dist_beta", "dist_gamma", "dkd_alpha", "dkd_beta"):
        if cfg[name] < 0:
            _fail(name, where, f"must be >= 0, got {cfg[name]}")
    for name in ("temperature", "loss_scale"):
        if cfg[name] <= 0:
            _fail(name, where, f"must be > 0, got {cfg[name]}")
    for name in ("rsd_weight", "rsd_kappa"):
        if cfg[name] < 0:
            _fail(name, where, f"must be >= 0, got {cfg[name]}")
    if cfg["rsd_gamma"] < 1:
        _fail("rsd_gamma", where, f"must be a positive integer, got {cfg['rsd_gamma']}")
    if not 0.0 < cfg["crop_pct"] <= 1.0:
        _fail("crop_pct", where, f"must be in (0, 1], got {cfg['crop_pct']}")
    low, high = cfg["scale"]
    if not 0.0 < low <= high <= 1.0:
        _fail("scale", where, f"must be [min, max] with 0 < min <= max <= 1, got {cfg['scale']}")
    low, high = cfg["ratio"]
    if not 0.0 < low <= high:
        _fail("ratio", where, f"must be [min, max] with 0 < min <= max, got {cfg['ratio']}")
    if (cfg["mixup"] > 0 or cfg["cutmix"] > 0) and cfg["batch_size"] % 2:
        _fail("batch_size", where, f"must be even with mixup/cutmix (pairs are mixed), got {cfg['batch_size']}")
    aa = cfg["auto_augment"]
    if aa is not None and aa.split("-")[0] not in AUTO_AUGMENT_PREFIXES:
        _fail("auto_augment", where, f"must start with one of {'|'.join(AUTO_AUGMENT_PREFIXES)}, got {aa!r}")
    stages = cfg["stages"]
    if len(set(stages)) != len(stages) or any(s not in (1, 2, 3, 4) for s in stages):
        _fail("stages", where, f"must be distinct stage numbers from 1..4, got {stages}")
    if cfg["teacher_cache"] is not None and cfg["distiller"] == "none":
        _fail("teacher_cache", where, "needs a distiller (distiller is none: there is no teacher to replace)")
    if len(cfg["eps"]) not in (1, len(stages) + 1):
        _fail("eps", where, f"needs 1 value or {len(stages) + 1} (one per stage + final logits), got {cfg['eps']}")
    if not all(e > 0 for e in cfg["eps"]):
        _fail("eps", where, f"entries must be > 0 (eps=0 gives the target class no weight at all), got {cfg['eps']}")
    weights = cfg["loss_weights"]
    if len(weights) not in (2, 3) or not all(w >= 0 for w in weights):
        _fail("loss_weights", where, f"must be 2 numbers >= 0 (ground truth, distillation), or 3 with the old "
                                     f"third entry for ofa_branch_weight, got {weights}")
    if cfg["ofa_branch_weight"] is None:  # an old config's third entry; the key of its own wins when set
        cfg["ofa_branch_weight"] = weights[2] if len(weights) == 3 else 1.0
    elif cfg["ofa_branch_weight"] < 0:
        _fail("ofa_branch_weight", where, f"must be >= 0, got {cfg['ofa_branch_weight']}")
    cfg["loss_weights"] = weights[:2]

    info = DATASET_INFO[dataset]
    if info["num_classes"] is None:
        if cfg["num_classes"] is None:
            cfg["num_classes"] = count_class_folders(cfg["data_dir"]) or None
        require("num_classes", "the number of classes: none counted, as data_dir has no train/ (or val/) with "
                               "class folders")
    elif cfg["num_classes"] is None:
        cfg["num_classes"] = info["num_classes"]
    elif dataset != "fake" and cfg["num_classes"] != info["num_classes"]:
        _fail("num_classes", where, f"must be {info['num_classes']} for dataset {dataset}, got {cfg['num_classes']}")
    channels = cfg["in_channels"]
    for name in ("mean", "std"):
        given = cfg[name]
        cfg[name] = _per_channel(name, given or list(info[name]), channels, where, default=given is None)
    if not all(0.0 <= m <= 1.0 for m in cfg["mean"]):
        _fail("mean", where, f"must be on the 0..1 scale, got {cfg['mean']}")
    if not all(0.0 < s <= 1.0 for s in cfg["std"]):
        _fail("std", where, f"must be on the 0..1 scale and > 0, got {cfg['std']}")
    return cfg


# ----------------------------------------------------------------------------- command line
#
# One argparse option per key, generated from KEYS: ``--key VALUE`` (also ``--key=VALUE`` and the
# dashed spelling ``--key-name``), ``--key V1 V2`` for list keys, a bare ``--flag`` for bool keys.
# ``key=value`` words are the same options written the way YAML reads. Values are parsed as YAML
# and then checked by ``coerce_value``, so a wrong value gets the same one-line error as in a file.

_DEST = "config key "  # argparse dest prefix of key options (never clashes with an entry point's own)
_KEY_VALUE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$", re.S)


class _Parser(argparse.ArgumentParser):
    """argparse that raises a one-line ``ValueError`` instead of printing usage and exiting 2."""

    def error(self, message):
        missing = re.match(r"argument --([\w-]+).*: expected (?:one|at least one) argument", message)
        if missing and missing.group(1).replace("-", "_") in KEYS:
            name = missing.group(1).replace("-", "_")
            raise ValueError(f"command line: key '{name}' needs a value (--{name} VALUE or {name}=VALUE)")
        raise ValueError(f"command line: {message}")


def _metavar(key):
    if key.choices:
        return "{" + "|".join(str(c) for c in key.choices) + "}"
    return {"int": "N", "float": "X", "bool": "true|false", "str": "TEXT", "int_list": "N",
            "float_list": "X"}[key.kind]


def add_key_options(parser, keys=None):
    """Add one option per config key (``keys``: a subset of ``KEYS`` in table order; default all)."""
    names = [n for n in KEYS if keys is None or n in keys]
    group = parser.add_argument_group("config keys", "override the config file: --key VALUE or key=VALUE "
                                                     "(values as in YAML; - and _ are interchangeable)")
    for name in names:
        key = KEYS[name]
        kwargs = dict(dest=_DEST + name, default=argparse.SUPPRESS, metavar=_metavar(key))
        if key.kind.endswith("_list"):
            kwargs["nargs"] = "+"
        elif key.kind == "bool":
            kwargs.update(nargs="?", const="true")
        default = "null" if key.default is None else key.default
        group.add_argument(f"--{name}", help=f"{key.help} (default {default})", **kwargs)
        if "_" in name:  # the dashed spelling, accepted but not listed twice in --help
            group.add_argument(f"--{name.replace('_', '-')}", help=argparse.SUPPRESS, **kwargs)
    parser.config_keys = tuple(names)
    return parser


def build_arg_parser(description=None, keys=None, epilog=None):
    """An ``argparse`` parser with ``--config`` and one option per config key (or per key of ``keys``,
    the ones an entry point uses); entry points add their own options to it."""
    parser = _Parser(description=description, epilog=epilog, allow_abbrev=False,
                     usage="%(prog)s [-h] [--config YAML] [options] [--KEY VALUE | KEY=VALUE ...]",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", default=None, metavar="YAML",
                        help="config file (with optional 'base:' files); its keys override the defaults")
    return add_key_options(parser, keys)


def _as_options(argv):
    """``key=value`` words become ``--key=value``; everything else is left to argparse."""
    out = []
    for word in argv:
        match = _KEY_VALUE.match(word) if not word.startswith("-") else None
        out.append(f"--{match.group(1)}={match.group(2)}" if match else word)
    return out


def _parse_scalar(text):
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _collect(parser, namespace, rest, program=None):
    """``{key: value}`` from parsed options; one-line errors for what argparse left over."""
    for word in rest:
        if word.startswith("-") and len(word) > 1 and not _is_number(word):
            name = word.lstrip("-").split("=", 1)[0].replace("-", "_")
            if name in KEYS and name not in parser.config_keys:
                raise ValueError(f"command line: key '{name}' is not used by {program or 'this command'}; "
                                 f"it may stay in the config file, where it has no effect here")
            raise _unknown_key(name, "command line")
        raise ValueError(f"command line: unexpected argument {word!r}; overrides look like key=value or --key value")
    out = {}
    for dest, value in vars(namespace).items():
        if not dest.startswith(_DEST):
            continue
        if isinstance(value, list):
            parsed = [_parse_scalar(v) for v in value]
            value = parsed[0] if len(parsed) == 1 else parsed
        else:
            value = _parse_scalar(value)
        out[dest[len(_DEST):]] = value
    return out


def _is_number(word):
    try:
        float(word)
        return True
    except ValueError:
        return False


def parse_overrides(argv, keys=None):
    """Turn ``['lr=0.1', '--epochs', '3', '--eps', '1', '1.5', '--ema']`` into ``{key: value}``.

    Values are parsed as YAML (so ``null``, ``true``, ``[1, 2]`` work); types are checked later,
    by ``load_config``. An unknown key or a stray word raises ``ValueError``.
    """
    parser = add_key_options(_Parser(add_help=False, allow_abbrev=False), keys)
    namespace, rest = parser.parse_known_args(_as_options(argv))
    return _collect(parser, namespace, rest)


def config_from_args(argv, parser=None, for_training=True):
    """Parse ``argv`` (without the program name): returns ``(namespace, Config)``.

    ``namespace`` holds the entry point's own options; the key options become the config's overrides.
    """
    parser = parser or build_arg_parser()
    namespace, rest = parser.parse_known_args(_as_options(argv))
    overrides = _collect(parser, namespace, rest, program=parser.prog)
    for dest in [d for d in vars(namespace) if d.startswith(_DEST)]:
        delattr(namespace, dest)
    return namespace, load_config(namespace.config, overrides, for_training=for_training)


# ----------------------------------------------------------------------------- saving

def save_config(cfg, path):
    """Write the resolved config as YAML, atomically (temp file in the same folder, then rename)."""
    data = {name: cfg[name] for name in KEYS if name in cfg}
    text = "# resolved config of this run; reuse it with --config\n"
    text += yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    write_text_atomic(path, text)
    return path
