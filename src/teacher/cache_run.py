"""Making a teacher-output cache: the frozen teacher run once over K views of every training image.

``build_teacher_cache(cfg, out_dir, views)`` is what ``tools/cache_teacher.py`` runs. The view draws are
in ``views``, what the outputs depend on in ``fingerprint``, the files in ``plan`` and ``writer``; every
refusal happens before anything is written.
"""
import os
import time

import numpy as np

import mindspore as ms
from mindspore import nn

from src.data import load_source
from src.files import file_sha256
from src.precision import resolve_precision

from .fingerprint import check_replayable, split_fingerprint
from .frozen import FrozenTeacher
from .model import build_teacher_model
from .plan import make_plan
from .replay import view_pairs_pipeline
from .writer import CacheWriter, topk_log_probs


class TeacherOutputs(nn.Cell):
    """The frozen teacher's outputs named in ``names`` ("logits", "feature"), as a tuple; the teacher in its
    inference form (BatchNorm folded, ``FrozenTeacher``), as the online training step runs it."""

    def __init__(self, teacher, names):
        super().__init__(auto_prefix=False)
        self.teacher = FrozenTeacher(teacher, names)

    def construct(self, x):
        return self.teacher.outputs(x)


def build_teacher_cache(cfg, out_dir=None, views=1, dtype="float16", topk=0, features=False, batch_size=None,
                        rank=0, group_size=1, on_event=None, flush_seconds=10.0):
    """Write rank ``rank``'s part of the cache of ``cfg``'s teacher on its training split to ``out_dir``.

    ``out_dir`` defaults to ``cfg.teacher_cache``. Every refusal (``out_dir`` exists, a killed run with
    other settings, too little disk, augmentation that cannot be replayed, a bad teacher checkpoint)
    raises ValueError before anything is written. ``on_event(kind, info)`` hears "plan" (sizes, before
    writing), "progress" (after every batch) and "done". Returns the manifest when this call completed the
    cache, None when other ranks' parts are still being written.
    """
    on_event = on_event or (lambda kind, info: None)
    out_dir = out_dir or cfg.teacher_cache
    if not out_dir:
        raise ValueError("no cache folder: pass --out DIR (or set teacher_cache in the config)")
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir):
        raise ValueError(f"{out_dir} already exists: a cache is never overwritten; choose another --out or delete it")
    if not cfg.teacher:
        raise ValueError("config: key 'teacher' is required to make a teacher cache (the teacher model name)")
    if not cfg.teacher_ckpt:
        raise ValueError(f"config: key 'teacher_ckpt' is required to make a teacher cache (trained weights of "
                         f"'{cfg.teacher}')")
    check_replayable(cfg)
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"--teacher-batch must be >= 1, got {batch_size}")
    batch_size = int(cfg.batch_size if batch_size is None else batch_size)
    outputs = ("logits", "feature") if features else ("logits",)

    source = load_source(cfg, "train")
    fingerprint = split_fingerprint(source)
    teacher = build_teacher_model(cfg)  # a training config may name the cache being made
    info = {"name": cfg.teacher, "checkpoint": os.path.abspath(cfg.teacher_ckpt),
            "sha256": file_sha256(cfg.teacher_ckpt, "teacher checkpoint"), "feature_dim": int(teacher.feature_dim),
            "params": int(sum(p.size for p in teacher.get_parameters()))}  # of the checkpoint (unfolded)
    plan = make_plan(cfg, fingerprint, info, views, dtype, topk, outputs, ranks=group_size)
    writer = CacheWriter.prepare(out_dir, plan, rank)
    part = plan["parts"][rank]
    on_event("plan", {"plan": plan, "out_dir": out_dir, "rank": rank, "pairs": writer.pairs,
                      "pairs_done": writer.done, "part": part})

    net = TeacherOutputs(teacher, outputs)  # the inference form: BatchNorm folded
    amp_level = resolve_precision(cfg).amp_level
    if amp_level != "O0":
        ms.amp.auto_mixed_precision(net.teacher.net, amp_level)  # the teacher as an online run would compute it
    net.set_train(False)
    index_dtype = plan["arrays"]["topk_index"]["dtype"] if topk else None
    resumed_at = writer.done
    next_pair, t_start, t_flush, first_batch = resumed_at, time.time(), time.time(), None
    if resumed_at < writer.pairs:
        pipeline = view_pairs_pipeline(cfg, source, part["start"], resumed_at, writer.pairs, views, batch_size)
        for images, boxes, pairs in pipeline.create_tuple_iterator(num_epochs=1, output_numpy=True):
            count = len(pairs)
            if pairs[0] != next_pair or pairs[-1] != next_pair + count - 1:
                raise RuntimeError(f"cache pipeline out of order: expected pair {next_pair}, got {pairs[0]}")
            if count < batch_size:  # pad the last batch: one compiled shape
                images = np.concatenate([images, np.zeros((batch_size - count, *images.shape[1:]), images.dtype)])
            result = [out.asnumpy()[:count].astype(np.float32) for out in net(ms.Tensor(images))]
            arrays = {"views": boxes}
            if topk:
                logp, classes = topk_log_probs(result[0], topk)
                arrays["topk_logp"], arrays["topk_index"] = logp.astype(dtype), classes.astype(index_dtype)
            else:
                arrays["logits"] = result[0].astype(dtype)
            if features:
                arrays["feature"] = result[1].astype(dtype)
            writer.write(next_pair, arrays)
            next_pair += count
            if time.time() - t_flush > flush_seconds:
                writer.flush(next_pair)
                t_flush = time.time()
            if first_batch is None:  # the first batch compiles the teacher's graph: rates leave it out
                first_batch = (next_pair - resumed_at, time.time() - t_start)
            on_event("progress", {"pairs_done": next_pair, "pairs": writer.pairs, "views": views,
                                  "new_pairs": next_pair - resumed_at, "elapsed_s": time.time() - t_start,
                                  "first_batch": first_batch})
        if next_pair != writer.pairs:
            raise RuntimeError(f"cache pipeline ended after {next_pair} of {writer.pairs} views")
    seconds = time.time() - t_start
    new = writer.pairs - resumed_at
    steady = None
    if first_batch is not None and new > first_batch[0] and seconds > first_batch[1]:
        steady = (new - first_batch[0]) / (seconds - first_batch[1])
    manifest = writer.finish({"seconds": seconds, "views_written": new, "views_per_s_after_first_batch": steady})
    on_event("done", {"manifest": manifest, "out_dir": out_dir, "rank": rank, "seconds": seconds})
    return manifest
