"""Writing a teacher-output cache: each rank's part into ``DIR.partial``, renamed to ``DIR`` when every part is done.

``DIR`` therefore exists only complete. A killed run resumes from its last flushed batch when started
again with the same settings (its ``plan.json`` must match field for field); each writer rank hashes its
own files (SHA-256) when its part is done, and the rank that sees every part done writes the manifest.
"""
import os
import shutil
import time

import numpy as np

from src.files import file_sha256, write_json_atomic

from .plan import MANIFEST, PARTIAL_SUFFIX, PLAN, first_difference, lookup, read_json, short


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
            old = read_json(old_plan, "plan of a killed cache run")
            field = first_difference(old, plan)
            if field:
                raise ValueError(f"{partial} holds a killed cache run with other settings ({field}: "
                                 f"{short(lookup(old, field))} there, {short(lookup(plan, field))} now); "
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
        done = int(read_json(path, "progress of a killed cache run")["pairs_done"])
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
            ranks = [read_json(m, "part marker") for m in markers]
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
                return read_json(os.path.join(self.out_dir, MANIFEST), "cache manifest")
            raise


def topk_log_probs(logits, k):
    """``(log-probabilities [B, k], classes [B, k])`` of the k most likely classes, most likely first."""
    z = np.asarray(logits, dtype=np.float64)
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    classes = np.argpartition(-logp, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(logp, classes, axis=1), axis=1, kind="stable")
    classes = np.take_along_axis(classes, order, axis=1)
    return np.take_along_axis(logp, classes, axis=1), classes
