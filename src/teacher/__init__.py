"""The teacher: the frozen model a distiller runs, or its outputs on K views of every image replayed from a
teacher-output cache; ``build_teacher_source`` gives a run one ``TeacherSource`` for both.

views (which crops and flips) -> fingerprint (what a cache was made for) -> plan (its files) -> writer
(``cache_run`` drives it: tools/cache_teacher.py) -> reader -> replay (the train pipeline of a cached run).
"""
from .cache_run import TeacherOutputs, build_teacher_cache
from .frozen import TEACHER_OUTPUTS, FrozenTeacher, check_output_names
from .model import build_teacher_model
from .reader import TeacherCache, open_teacher_cache
from .source import TeacherSource, build_teacher_source, online_teacher

__all__ = ["TEACHER_OUTPUTS", "FrozenTeacher", "check_output_names", "build_teacher_model", "TeacherCache",
           "open_teacher_cache", "TeacherSource", "build_teacher_source", "online_teacher", "TeacherOutputs",
           "build_teacher_cache"]
