"""Reading a teacher-output cache: a finished cache opened, checked against the run, and read row by row.

Training reads rows through numpy memmaps, mapped on first use in each process. Opening a cache checks
every array's header and size, and its SHA-256 against the manifest once per process and file version
(a streaming hash; see docs/teacher_cache.md for its cost): a changed byte is refused naming the file.
Caches made before the checksums open with a warning that their arrays are not verified. Array files are
plain names inside the cache folder: a manifest naming an absolute path or ``..`` is refused.
"""
import logging
import math
import os

import numpy as np

from src.files import file_sha256

from .fingerprint import RUN_KEYS, check_replayable, run_fields, split_fingerprint
from .plan import FORMAT, MANIFEST, PARTIAL_SUFFIX, VERSION, read_json, short

# the smallest probability mass a top-k cache gives the classes it did not keep (keeps log finite)
MIN_REST_MASS = 1e-12
REMAKE = "make the cache again with tools/cache_teacher.py"
logger = logging.getLogger(__name__)
# files whose SHA-256 this process checked: path -> (size, mtime_ns, inode, sha256); a changed file is hashed again
_verified = {}
_warned = set()


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
        m = read_json(manifest_path, "cache manifest")
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
        raise ValueError(f"teacher_cache {self.path}: {field} is {short(cached)} in the cache but {short(run)} "
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
