"""Where a run's teacher outputs come from: the frozen model run in every step, or a teacher-output cache.

``build_teacher_source(cfg)`` is called once per run. The run hands the ``TeacherSource`` to the distiller
(what it reads off a teacher: ``num_classes``, ``feature_dim``, and ``model`` to run, if any) and to the
train pipeline (``replay(names)``: the builder ``create_dataset`` takes to replay the cache's views), so a
cache is opened and checked once per run, not once per epoch's pipeline.
"""
import logging
from dataclasses import dataclass
from functools import partial

from src.files import file_sha256
from src.logs import count

from .frozen import TEACHER_OUTPUTS
from .model import build_teacher_model
from .reader import open_teacher_cache
from .replay import replay_pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherSource:
    """The teacher of a run: its name, ``num_classes``, ``feature_dim`` (the width of its pooled feature) and
    the ``outputs`` it can give ("logits", "feature").

    ``model`` set: the network, run frozen in every step. ``model`` None: the outputs come with every batch,
    replayed from ``cache`` (a ``TeacherCache``) in a run; nothing of the teacher is built. Both set: the
    cache's views with the model run in the step (how a test compares a cached run with the online one).
    """

    name: str
    num_classes: int
    feature_dim: int
    outputs: tuple = ("logits",)
    model: object = None
    cache: object = None

    def replay(self, names):
        """The train-pipeline builder ``create_dataset(..., replay=)`` takes: ``(cfg, source, sampler,
        batch_size) -> pipeline`` of the cache's views with the outputs ``names`` as columns (none when the
        model runs in the step); None without a cache. ValueError when the cache lacks an output in ``names``."""
        if self.cache is None:
            return None
        names = () if self.model is not None else tuple(names)
        self.cache.check_outputs(names)
        return partial(replay_pipeline, cache=self.cache, names=names)


def online_teacher(model, name):
    """The source of a run whose step runs ``model`` (named ``name``)."""
    return TeacherSource(name, int(model.num_classes), int(model.feature_dim), TEACHER_OUTPUTS, model=model)


def build_teacher_source(cfg, load=True):
    """The teacher of ``cfg``: with ``teacher_cache`` set the opened cache, checked against the run (nothing is
    built or loaded), else ``build_teacher_model(cfg, load)`` run online.

    With a cache the teacher checkpoint is compared (SHA-256) when ``teacher_ckpt`` is set; the split is
    checked when the train pipeline is made.
    """
    if not cfg.teacher_cache:
        return online_teacher(build_teacher_model(cfg, load), cfg.teacher)
    cache = open_teacher_cache(cfg.teacher_cache)
    cache.check_run(cfg, teacher_sha256=file_sha256(cfg.teacher_ckpt, "teacher checkpoint") if cfg.teacher_ckpt else None)
    m = cache.manifest
    params = m["teacher_params"]
    log.info("teacher-output cache %s: %d views per image of %d images; teacher %s not built (%.2f M parameters, "
             "%.0f MB of float32 weights not in memory; no teacher forward in the step)%s", cache.path, cache.views,
             cache.num_images, m["teacher"], params / 1e6, params * 4 / 2**20,
             "" if cfg.teacher_ckpt else "; teacher_ckpt unset, so the checkpoint was not compared")
    if cache.views < cfg.epochs:
        log.info("teacher-output cache: %s for %s, so views repeat (every view is used before any repeats); "
                 "teacher_cache_strict refuses this", count(cache.views, "view"), count(cfg.epochs, "epoch"))
    return TeacherSource(m["teacher"], cache.num_classes, int(m["teacher_feature_dim"]), tuple(cache.outputs),
                         cache=cache)
