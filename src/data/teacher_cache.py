"""Teacher-output cache: the frozen teacher's outputs on K replayable views of every training image.

A cache directory holds ``manifest.json`` (written last, atomically) and, for each rank ``r`` of the
``G`` ranks that wrote it, one ``.npy`` file per array covering the images ``[start, stop)`` of its part:

* ``views`` int32 ``[n, K, 5]``: crop top, left, height, width (pixels of the decoded image) and flip flag;
* ``logits`` ``[n, K, C]`` (float16 or float32), or with top-k storage ``topk_logp`` ``[n, K, k]`` (the
  k largest log-probabilities) and ``topk_index`` ``[n, K, k]`` (their classes);
* optionally ``feature`` ``[n, K, D]``: the teacher's pooled final feature.

Views are drawn from ``(seed, image index, view)`` alone with RandomResizedCrop's algorithm (10 tries of
an area in ``scale`` and a log-uniform aspect ratio in ``ratio``, then a centre crop), plus the flip flag.
Training reads rows through numpy memmaps: a rank touches only the pages of the images it reads, and
any number of training ranks can read a cache written by any number of ranks.

A cache run writes into ``DIR.partial`` and renames it to ``DIR`` when every part is done, so ``DIR``
exists only complete; a killed run resumes from its last flushed batch when started again with the
same settings.

The manifest records the SHA-256 of every array file (each writer rank hashes its own files when its
part is done). Opening a cache checks them once per process and file version (a streaming hash; see
docs/teacher_cache.md for its cost): a changed byte is refused naming the file. Caches made before the
checksums open with a warning that their arrays are not verified. Array files are plain names inside
the cache folder: a manifest naming an absolute path or ``..`` is refused.
"""
import hashlib
import json
import logging
import math
import os
import shutil
import time

import numpy as np

from src.files import file_sha256, write_json_atomic

FORMAT = "ofakd-teacher-cache"
VERSION = 1
MANIFEST = "manifest.json"
PLAN = "plan.json"
PARTIAL_SUFFIX = ".partial"
OUTPUT_NAMES = ("logits", "feature")
DTYPES = ("float16", "float32")
MAX_ATTEMPTS = 10  # RandomResizedCrop's tries before its centre-crop fallback
SCHEDULE_SALT = 0x7EAC  # keeps the view schedule's stream apart from other draws seeded with the run's seed
# keys of the run the cached outputs depend on: the teacher's input and the view distribution
RUN_KEYS = ("dataset", "image_size", "in_channels", "num_classes", "interpolation", "mean", "std",
            "scale", "ratio", "hflip")
# the smallest probability mass a top-k cache gives the classes it did not keep (keeps log finite)
MIN_REST_MASS = 1e-12
REMAKE = "make the cache again with tools/cache_teacher.py"
logger = logging.getLogger(__name__)
# files whose SHA-256 this process checked: path -> (size, mtime_ns, inode, sha256); a changed file is hashed again
_verified = {}
_warned = set()


# ----------------------------------------------------------------------------- views

def draw_view(seed, index, view, height, width, scale, ratio, hflip):
    """``(top, left, height, width, flip)`` of view ``view`` of image ``index`` (``height`` x ``width`` pixels).

    RandomResizedCrop's algorithm with a generator seeded by ``(seed, index, view)`` only, so any process
    draws the same box for the same image and view.
    """
    rng = np.random.default_rng([int(seed), int(index), int(view)])
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    box = None
    for _ in range(MAX_ATTEMPTS):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            box = (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
            break
    if box is None:  # centre crop at the nearest allowed aspect ratio
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            w, h = int(round(height * max(ratio))), height
        else:
            w, h = width, height
        box = ((height - h) // 2, (width - w) // 2, h, w)
    flip = int(rng.random() < hflip)
    return (*box, flip)


def view_schedule(num_images, views, seed, epoch):
    """Which cached view every image uses at ``epoch`` (int64 ``[num_images]``).

    Epochs come in rounds of ``views``: in round ``epoch // views`` each image walks through its own
    seeded permutation of the views, so every view is used once before any repeats.
    """
    rnd, position = divmod(int(epoch), int(views))
    rng = np.random.default_rng([int(seed), rnd, SCHEDULE_SALT])
    keys = rng.random((int(num_images), int(views)), dtype=np.float32)
    return np.argsort(keys, axis=1, kind="stable")[:, position].astype(np.int64)


# ----------------------------------------------------------------------------- run description

def split_fingerprint(source):
    """``{"num_samples", "sha256"}`` of a train source: labels plus pixels (arrays) or file names (folders).

    Memoised on the source: a pipeline made every epoch hashes it once.
    """
    cached = getattr(source, "_teacher_cache_fingerprint", None)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(source.labels, dtype=np.int64).tobytes())
    if hasattr(source, "paths"):  # folder images: class folder / file name (the root may move)
        for path in source.paths:
            digest.update(("/".join(os.path.normpath(path).split(os.sep)[-2:]) + "\n").encode("utf-8"))
    elif hasattr(source, "images"):
        digest.update(np.ascontiguousarray(source.images).data)
    elif hasattr(source, "pool"):
        digest.update(np.ascontiguousarray(source.pool).data)
    fingerprint = {"num_samples": len(source), "sha256": digest.hexdigest()}
    source._teacher_cache_fingerprint = fingerprint
    return fingerprint


def run_fields(cfg):
    """The values of ``RUN_KEYS`` in ``cfg``, as a manifest stores them."""
    out = {}
    for key in RUN_KEYS:
        value = cfg[key]
        out[key] = [float(v) for v in value] if isinstance(value, (list, tuple)) else value
    return out


def unreplayable_keys(cfg):
    """The run's random augmentation that a cache cannot replay (``key=value`` strings): photometric and mixing."""
    keys = []
    if cfg["auto_augment"]:
        keys.append(f"auto_augment={cfg['auto_augment']}")
    elif cfg["color_jitter"] > 0:  # colour jitter is unused when auto_augment is set
        keys.append(f"color_jitter={cfg['color_jitter']:g}")
    for key in ("re_prob", "mixup", "cutmix"):
        if cfg[key] > 0:
            keys.append(f"{key}={cfg[key]:g}")
    return keys


def check_replayable(cfg):
    """ValueError naming the keys when the recipe has augmentation a cache cannot replay, unless approximate."""
    keys = unreplayable_keys(cfg)
    if keys and not cfg["teacher_cache_approx"]:
        off = " ".join(k.split("=")[0] + ("=null" if k.startswith("auto_augment=") else "=0") for k in keys)
        raise ValueError(f"teacher_cache: {', '.join(keys)} cannot be replayed from a teacher-output cache (only "
                         f"crop and flip are); turn them off with {off} (on the cache tool's command and on "
                         f"every train command that reads the cache), or set teacher_cache_approx: true to use "
                         f"the teacher's outputs on the cropped/flipped view (see docs/teacher_cache.md)")
    return keys


def stored_arrays(outputs, num_classes, feature_dim, views, dtype, topk):
    """``{array name: (numpy dtype, shape of one image's rows)}`` of a cache."""
    arrays = {"views": ("int32", [views, 5])}
    if "logits" in outputs:
        if topk:
            arrays["topk_logp"] = (dtype, [views, topk])
            arrays["topk_index"] = ("int16" if num_classes <= np.iinfo(np.int16).max else "int32", [views, topk])
        else:
            arrays["logits"] = (dtype, [views, num_classes])
    if "feature" in outputs:
        arrays["feature"] = (dtype, [views, feature_dim])
    return arrays


def part_range(num_images, rank, group_size):
    """Images ``[start, stop)`` that writer rank ``rank`` of ``group_size`` caches."""
    return num_images * rank // group_size, num_images * (rank + 1) // group_size


def part_file(name, rank, group_size):
    return f"{name}-{rank:05d}-of-{group_size:05d}.npy"


def make_plan(cfg, fingerprint, teacher, views, dtype="float16", topk=0, outputs=("logits",), ranks=1):
    """The manifest of the cache a run will write, before any timing fields.

    ``teacher``: ``{"name", "checkpoint", "sha256", "feature_dim", "params"}``.
    """
    if views < 1:
        raise ValueError(f"--views must be >= 1, got {views}")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {'|'.join(DTYPES)}, got {dtype!r}")
    num_classes = int(cfg["num_classes"])
    if topk and not 1 <= topk < num_classes:
        raise ValueError(f"--topk must be in 1..{num_classes - 1} (num_classes={num_classes}) or 0 for full logits, "
                         f"got {topk}")
    unknown = [name for name in outputs if name not in OUTPUT_NAMES]
    if unknown or "logits" not in outputs:
        raise ValueError(f"cache outputs must include 'logits' and come from {OUTPUT_NAMES}, got {list(outputs)}")
    arrays = stored_arrays(outputs, num_classes, teacher["feature_dim"], views, dtype, topk)
    per_image = sum(np.dtype(dt).itemsize * int(np.prod(shape)) for dt, shape in arrays.values())
    count = fingerprint["num_samples"]
    parts = []
    for rank in range(ranks):
        start, stop = part_range(count, rank, ranks)
        parts.append({"start": start, "stop": stop,
                      "files": {name: part_file(name, rank, ranks) for name in arrays}})
    return {
        "format": FORMAT, "version": VERSION,
        "teacher": teacher["name"], "teacher_checkpoint": teacher["checkpoint"],
        "teacher_sha256": teacher["sha256"], "teacher_feature_dim": int(teacher["feature_dim"]),
        "teacher_params": int(teacher["params"]), "amp_level": cfg["amp_level"],
        "run": run_fields(cfg),
        "split": dict(fingerprint),
        "augmentation": {"approx": bool(cfg["teacher_cache_approx"]), "not_replayed": unreplayable_keys(cfg)},
        "views": int(views), "seed": int(cfg["seed"]), "dtype": dtype, "topk": int(topk), "outputs": list(outputs),
        "arrays": {name: {"dtype": dt, "shape_per_image": list(shape)} for name, (dt, shape) in arrays.items()},
        "bytes_per_image": int(per_image), "total_bytes": int(per_image * count),
        "ranks": int(ranks), "parts": parts,
    }


def first_difference(old, new, prefix=""):
    """Dotted name of the first field (in ``new``'s order) where two plans differ, or None."""
    for key in list(new) + [k for k in old if k not in new]:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}"
    return None


def _lookup(data, dotted):
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _short(value):
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the {what} ({type(err).__name__}: {err})") from None


# ----------------------------------------------------------------------------- writing

class CacheWriter:
    """Writes one rank's part of a cache into ``DIR.partial`` and turns the folder into ``DIR`` at the end.

    Use ``CacheWriter.prepare(...)``: every refusal (``DIR`` exists, a killed run with other settings,
    too little disk) happens there, before anything is written.
    """

    def __init__(self, out_dir, plan, rank, done):
        self.out_dir = os.path.abspath(out_dir)
        self.partial = self.out_dir + PARTIAL_SUFFIX
        self.plan = plan
        self.rank, self.group_size = rank, plan["ranks"]
        self.part = plan["parts"][rank]
        self.views = plan["views"]
        self.pairs = (self.part["stop"] - self.part["start"]) * self.views
        self.done = done
        self.maps = {}
        for name, spec in plan["arrays"].items():
            path = os.path.join(self.partial, self.part["files"][name])
            shape = (self.pairs, *spec["shape_per_image"][1:])
            if done > 0:  # resuming: rows before ``done`` were flushed
                self.maps[name] = np.load(path, mmap_mode="r+")
            else:  # a fresh part (any file a run killed before its first flush left is replaced)
                self.maps[name] = np.lib.format.open_memmap(path, mode="w+", dtype=spec["dtype"], shape=shape)
        self.progress = os.path.join(self.partial, f"progress-{rank:05d}-of-{self.group_size:05d}.json")

    @classmethod
    def prepare(cls, out_dir, plan, rank=0):
        """A writer for ``rank``'s part, resuming a killed run of the same plan; ValueError on every refusal."""
        out_dir = os.path.abspath(out_dir)
        partial = out_dir + PARTIAL_SUFFIX
        if os.path.exists(out_dir):
            raise ValueError(f"{out_dir} already exists: a cache is never overwritten; choose another --out "
                             f"or delete it")
        done = 0
        old_plan = os.path.join(partial, PLAN)
        if os.path.isfile(old_plan):
            old = _read_json(old_plan, "plan of a killed cache run")
            field = first_difference(old, plan)
            if field:
                raise ValueError(f"{partial} holds a killed cache run with other settings ({field}: "
                                 f"{_short(_lookup(old, field))} there, {_short(_lookup(plan, field))} now); "
                                 f"run again with the same settings to resume it, or delete it")
            done = cls._pairs_done(partial, plan, rank)
        elif os.path.exists(partial) and [n for n in os.listdir(partial) if not n.startswith(".tmp-")]:
            raise ValueError(f"{partial} exists but holds no cache plan: delete it")
        need = cls._bytes_left(partial, plan)
        parent = os.path.dirname(out_dir)
        if not os.path.isdir(parent):
            raise ValueError(f"--out {out_dir}: parent folder {parent} does not exist")
        free = shutil.disk_usage(parent).free
        if need > free:
            raise ValueError(f"not enough disk space for the cache under {parent}: {need / 2**30:.2f} GiB still to "
                             f"write, {free / 2**30:.2f} GiB free")
        os.makedirs(partial, exist_ok=True)
        if not os.path.isfile(old_plan):
            write_json_atomic(old_plan, plan)
        return cls(out_dir, plan, rank, done)

    @staticmethod
    def _pairs_done(partial, plan, rank):
        group = plan["ranks"]
        if os.path.isfile(os.path.join(partial, f"done-{rank:05d}-of-{group:05d}.json")):
            start, stop = plan["parts"][rank]["start"], plan["parts"][rank]["stop"]
            return (stop - start) * plan["views"]
        path = os.path.join(partial, f"progress-{rank:05d}-of-{group:05d}.json")
        if not os.path.isfile(path):
            return 0
        done = int(_read_json(path, "progress of a killed cache run")["pairs_done"])
        # rows after the last flushed batch may be half written: they are written again
        for name in plan["arrays"]:
            if not os.path.isfile(os.path.join(partial, plan["parts"][rank]["files"][name])):
                return 0
        return done

    @staticmethod
    def _bytes_left(partial, plan):
        """Bytes of every part not yet written (all ranks: they share the disk)."""
        left = 0
        per_pair = plan["bytes_per_image"] / plan["views"]
        for rank, part in enumerate(plan["parts"]):
            pairs = (part["stop"] - part["start"]) * plan["views"]
            done = CacheWriter._pairs_done(partial, plan, rank) if os.path.isdir(partial) else 0
            left += int((pairs - done) * per_pair)
        return left

    def write(self, first_pair, arrays):
        """Store rows ``first_pair ..`` (local to this part) of every array in ``arrays`` (name -> [b, ...])."""
        for name, rows in arrays.items():
            self.maps[name][first_pair:first_pair + len(rows)] = rows

    def flush(self, pairs_done):
        """Make ``pairs_done`` rows durable; a killed run resumes after them."""
        for array in self.maps.values():
            array.flush()
        write_json_atomic(self.progress, {"pairs_done": int(pairs_done)})
        self.done = int(pairs_done)

    def finish(self, stats=None):
        """Mark this part done; the rank that sees every part done writes the manifest and renames the folder.

        Returns the manifest when the cache is complete, None when other ranks' parts are still running.
        """
        self.flush(self.pairs)
        self.maps.clear()
        marker = os.path.join(self.partial, f"done-{self.rank:05d}-of-{self.group_size:05d}.json")
        sums = {name: file_sha256(os.path.join(self.partial, file)) for name, file in self.part["files"].items()}
        write_json_atomic(marker, {"rank": self.rank, **(stats or {}), "sha256": sums})
        markers = [os.path.join(self.partial, f"done-{r:05d}-of-{self.group_size:05d}.json")
                   for r in range(self.group_size)]
        if not all(os.path.isfile(m) for m in markers):
            return None
        try:
            ranks = [_read_json(m, "part marker") for m in markers]
            parts = [dict(part, sha256=marker.pop("sha256")) for part, marker in zip(self.plan["parts"], ranks)]
            manifest = dict(self.plan, parts=parts, created=time.strftime("%Y-%m-%d %H:%M:%S"), writers=ranks)
            write_json_atomic(os.path.join(self.partial, MANIFEST), manifest)  # last file of a cache
            for name in os.listdir(self.partial):
                if name.startswith(("progress-", "done-")) or name == PLAN:
                    os.remove(os.path.join(self.partial, name))
            os.rename(self.partial, self.out_dir)
            return manifest
        except OSError:
            # another rank finished at the same moment and renamed the folder first
            if os.path.isfile(os.path.join(self.out_dir, MANIFEST)):
                return _read_json(os.path.join(self.out_dir, MANIFEST), "cache manifest")
            raise


# ----------------------------------------------------------------------------- reading

def _sha256_once(path):
    """SHA-256 of ``path``, hashed once per process while the file keeps its size, mtime and inode."""
    st = os.stat(path)
    key = (st.st_size, st.st_mtime_ns, st.st_ino)
    known = _verified.get(path)
    if known is None or known[:3] != key:
        known = (*key, file_sha256(path))
        _verified[path] = known
    return known[3]


def _npy_layout(path):
    """``(dtype, shape, data offset)`` of a .npy file's header."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(f)
        return dtype, shape, f.tell()


class TeacherCache:
    """A finished cache opened for reading; arrays are memory-mapped on first use in each process."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        if not os.path.isdir(self.path):
            if os.path.isdir(self.path + PARTIAL_SUFFIX):
                raise ValueError(f"teacher_cache {self.path} is incomplete: its cache run stopped before the end "
                                 f"({self.path}{PARTIAL_SUFFIX}); run tools/cache_teacher.py again with the same "
                                 f"arguments to finish it")
            raise ValueError(f"teacher_cache {self.path} does not exist (make one with tools/cache_teacher.py)")
        manifest_path = os.path.join(self.path, MANIFEST)
        if not os.path.isfile(manifest_path):
            raise ValueError(f"teacher_cache {self.path} has no {MANIFEST}: not a finished teacher-output cache")
        m = _read_json(manifest_path, "cache manifest")
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise ValueError(f"{manifest_path}: not a teacher-output cache manifest (format {m.get('format')!r})")
        if m.get("version") != VERSION:
            raise ValueError(f"{manifest_path}: cache format version {m.get('version')}, this code reads {VERSION}; "
                             f"make the cache again")
        self.manifest = m
        self.views = int(m["views"])
        self.num_images = int(m["split"]["num_samples"])
        self.num_classes = int(m["run"]["num_classes"])
        self.outputs = tuple(m["outputs"])
        self.topk = int(m["topk"])
        self.starts = np.array([p["start"] for p in m["parts"]], dtype=np.int64)
        self._maps = {}
        self._check_files()

    def _check_files(self):
        unverified = 0
        for part in self.manifest["parts"]:
            pairs = (part["stop"] - part["start"]) * self.views
            for name, spec in self.manifest["arrays"].items():
                file = part["files"][name]
                if not isinstance(file, str) or os.path.basename(file) != file or file in ("", ".", ".."):
                    raise ValueError(f"teacher_cache {self.path}: {MANIFEST} names the {name} file {file!r}, not a "
                                     f"file name inside the cache folder (arrays are read from the cache folder "
                                     f"only); {REMAKE}")
                path = os.path.join(self.path, file)
                if not os.path.isfile(path):
                    raise ValueError(f"teacher_cache {self.path}: array file {part['files'][name]} is missing")
                expected_shape = (pairs, *spec["shape_per_image"][1:])
                try:
                    dtype, shape, offset = _npy_layout(path)
                except (OSError, ValueError) as err:
                    raise ValueError(f"teacher_cache {self.path}: {part['files'][name]} is not a .npy array "
                                     f"({err})") from None
                if tuple(shape) != expected_shape or dtype != np.dtype(spec["dtype"]):
                    raise ValueError(f"teacher_cache {self.path}: {part['files'][name]} holds {dtype} {tuple(shape)}, "
                                     f"the manifest says {spec['dtype']} {expected_shape}")
                size = os.path.getsize(path)
                expected = offset + int(np.prod(expected_shape)) * dtype.itemsize
                if size != expected:
                    raise ValueError(f"teacher_cache {self.path}: {part['files'][name]} is truncated ({size} bytes, "
                                     f"expected {expected})")
                recorded = (part.get("sha256") or {}).get(name)
                if recorded is None:
                    unverified += 1
                elif _sha256_once(path) != recorded:
                    raise ValueError(f"teacher_cache {self.path}: {file} does not match the SHA-256 in its {MANIFEST} "
                                     f"(the file changed after the cache was made); {REMAKE}")
        if unverified and self.path not in _warned:
            _warned.add(self.path)  # once per process: a run opens its cache every epoch
            logger.warning("teacher_cache %s records no checksums of its arrays (made before they were recorded): "
                           "a damaged array cannot be detected; %s to have them checked", self.path, REMAKE)

    def row_file(self, name, index):
        """The file holding image ``index``'s rows of array ``name`` (for messages)."""
        return self.manifest["parts"][self._part(index)]["files"][name]

    def __getstate__(self):  # worker processes map the files themselves instead of receiving copies
        state = dict(self.__dict__)
        state["_maps"] = {}
        return state

    # checks ---------------------------------------------------------------------------------------
    def _refuse(self, field, cached, run, hint):
        raise ValueError(f"teacher_cache {self.path}: {field} is {_short(cached)} in the cache but {_short(run)} "
                         f"in this run; {hint}")

    def check_run(self, cfg, teacher_sha256=None):
        """ValueError naming the first field of the manifest that does not match the run ``cfg``."""
        m = self.manifest
        remake = "make a cache for this run with tools/cache_teacher.py"
        if cfg["teacher"] and cfg["teacher"] != m["teacher"]:
            self._refuse("teacher", m["teacher"], cfg["teacher"], remake)
        if teacher_sha256 is not None and teacher_sha256 != m["teacher_sha256"]:
            self._refuse("teacher checkpoint (SHA-256)", m["teacher_sha256"][:16], teacher_sha256[:16],
                         f"teacher_ckpt {cfg['teacher_ckpt']} is not the checkpoint the cache was made from")
        run = run_fields(cfg)
        for key in RUN_KEYS:
            if run[key] != m["run"][key]:
                self._refuse(key, m["run"][key], run[key], remake)
        if cfg["teacher_cache_strict"] and self.views < cfg["epochs"]:
            self._refuse("views", self.views, f"epochs={cfg['epochs']}",
                         "teacher_cache_strict needs one view per epoch: make the cache with --views >= epochs")
        check_replayable(cfg)

    def check_split(self, source):
        """ValueError when ``source`` is not the training split the cache was made from."""
        run = split_fingerprint(source)
        cached = self.manifest["split"]
        if run != cached:
            self._refuse("split", f"{cached['num_samples']} samples, sha256 {cached['sha256'][:12]}",
                         f"{run['num_samples']} samples, sha256 {run['sha256'][:12]}",
                         "it was made for other training images (dataset, data_dir, train_subset and the seed "
                         "that picks the subset must match)")

    def check_outputs(self, names):
        missing = [name for name in names if name not in self.outputs]
        if missing:
            raise ValueError(f"teacher_cache {self.path} has no {', '.join(missing)} output (it holds "
                             f"{', '.join(self.outputs)}); make it again with --features")

    # rows -----------------------------------------------------------------------------------------
    def _part(self, index):
        if not 0 <= index < self.num_images:
            raise ValueError(f"teacher_cache {self.path}: image index {index} is outside 0..{self.num_images - 1}")
        return int(np.searchsorted(self.starts, index, side="right") - 1)

    def _array(self, part, name):
        key = (part, name)
        if key not in self._maps:
            path = os.path.join(self.path, self.manifest["parts"][part]["files"][name])
            self._maps[key] = np.load(path, mmap_mode="r")
        return self._maps[key]

    def _row(self, name, index, view):
        part = self._part(index)
        return self._array(part, name)[(index - int(self.starts[part])) * self.views + view]

    def view(self, index, view):
        """``(top, left, height, width, flip)`` of the view, int32 [5]."""
        return np.asarray(self._row("views", index, view))

    def output(self, name, index, view):
        """The teacher's ``name`` output ("logits" or "feature") on the view, float32.

        Top-k logits come back as log-probabilities over all classes: the kept ones as stored, the rest
        of the mass spread evenly over the other classes (softmax of them is the stored distribution).
        """
        if name == "logits" and self.topk:
            logp = np.asarray(self._row("topk_logp", index, view), dtype=np.float32)
            classes = np.asarray(self._row("topk_index", index, view), dtype=np.int64)
            rest = max(1.0 - float(np.exp(logp.astype(np.float64)).sum()), MIN_REST_MASS)
            out = np.full(self.num_classes, math.log(rest / (self.num_classes - self.topk)), dtype=np.float32)
            out[classes] = logp
            return out
        return np.asarray(self._row(name, index, view), dtype=np.float32)


def open_teacher_cache(path):
    """A ``TeacherCache`` (ValueError with one line when it is missing, incomplete or damaged)."""
    return TeacherCache(path)


def topk_log_probs(logits, k):
    """``(log-probabilities [B, k], classes [B, k])`` of the k most likely classes, most likely first."""
    z = np.asarray(logits, dtype=np.float64)
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    classes = np.argpartition(-logp, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(logp, classes, axis=1), axis=1, kind="stable")
    classes = np.take_along_axis(classes, order, axis=1)
    return np.take_along_axis(logp, classes, axis=1), classes
