import os
import sys

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_execution_mode():
    """Tests that switch MindSpore to GRAPH_MODE (or run a Trainer in-process) must not leak it."""
    import mindspore as ms

    mode = ms.get_context("mode")
    yield
    ms.set_context(mode=mode)


@pytest.fixture
def graph_mode():
    """Run the test in GRAPH_MODE (the mode is restored afterwards by ``_restore_execution_mode``)."""
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
