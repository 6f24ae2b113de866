"""Files the project writes and reads: atomic replacement under faults, checkpoint CRC, the CIFAR unpickler."""
import errno
import os
import pickle

import numpy as np
import pytest

from src.files import PARTIAL_PREFIX, WriteError, atomic_output, remove_partial_files, write_json_atomic


def listing(folder):
    return sorted(os.listdir(folder))


def test_atomic_output_replaces_only_a_complete_file(tmp_path):
    path = tmp_path / "out" / "data.json"
    write_json_atomic(str(path), {"a": 1})
    assert path.read_text().strip().startswith("{") and listing(path.parent) == ["data.json"]
    before = path.read_bytes()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_output(str(path)) as tmp:
            with open(tmp, "w") as f:
                f.write('{"a": 2, "half')
            with open(os.path.splitext(tmp)[0] + ".tmp", "w") as f:  # a writer's own side file
                f.write("x")
            raise Boom()
    assert path.read_bytes() == before and listing(path.parent) == ["data.json"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EFBIG])
def test_a_failed_write_is_one_line_naming_the_file_and_keeps_the_old_one(tmp_path, code):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"previous good checkpoint")
    with pytest.raises(WriteError) as excinfo:
        with atomic_output(str(path)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"partial")
            raise OSError(code, os.strerror(code))  # what the disk (or the writer) reported
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message and os.strerror(code) in message
    assert isinstance(excinfo.value, ValueError)  # entry points report it as bad input: exit 2
    assert path.read_bytes() == b"previous good checkpoint" and listing(tmp_path) == ["last.ckpt"]


def test_partial_files_of_a_killed_writer_are_removed_by_the_next_run(tmp_path):
    (tmp_path / f"{PARTIAL_PREFIX}123-last.ckpt").write_bytes(b"half")
    (tmp_path / f"{PARTIAL_PREFIX}123-last.tmp").write_bytes(b"half")
    (tmp_path / "best.ckpt").write_bytes(b"good")
    assert sorted(remove_partial_files(str(tmp_path))) == [f"{PARTIAL_PREFIX}123-last.ckpt",
                                                           f"{PARTIAL_PREFIX}123-last.tmp"]
    assert listing(tmp_path) == ["best.ckpt"]


# ------------------------------------------------------------------------------------------- checkpoints

def _params(seed=0):
    from mindspore import Parameter, Tensor

    rng = np.random.RandomState(seed)
    return [{"name": "w", "data": Parameter(Tensor(rng.randn(64, 64).astype(np.float32)), name="w")},
            {"name": "b", "data": Parameter(Tensor(rng.randn(64).astype(np.float32)), name="b")}]


def test_a_changed_byte_in_a_checkpoint_is_refused_naming_it(tmp_path):
    from src.checkpoint import read_checkpoint, save_atomic, verify_checkpoint

    path = str(tmp_path / "best.ckpt")
    save_atomic(_params(), path, append_dict={"epoch": 3})
    assert verify_checkpoint(path) is True
    assert float(read_checkpoint(path)["epoch"].asnumpy()) == 3
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the weights
    os.chmod(path, 0o600)
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(ValueError) as excinfo:
        read_checkpoint(path)
    message = str(excinfo.value)
    assert "\n" not in message and path in message and "CRC32" in message


def test_disk_full_during_a_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import mindspore as ms

    from src import checkpoint

    path = tmp_path / "resume.ckpt"
    checkpoint.save_atomic(_params(0), str(path))
    before = path.read_bytes()

    def full_disk(params, name, **kwargs):  # writes half a file, then the disk is full
        with open(name, "wb") as f:
            f.write(before[: len(before) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ms, "save_checkpoint", full_disk)
    with pytest.raises(ValueError) as excinfo:
        checkpoint.save_atomic(_params(1), str(path))
    assert str(path) in str(excinfo.value) and "No space left on device" in str(excinfo.value)
    assert path.read_bytes() == before and listing(tmp_path) == ["resume.ckpt"]


# ------------------------------------------------------------------------------------------- CIFAR pickles

class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # creates a file when unpickled by pickle.load


def test_a_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    from src.data.cifar import read_cifar_pickle

    marker = tmp_path / "payload_ran"
    bad = tmp_path / "train"
    with open(bad, "wb") as f:
        pickle.dump({b"data": _Payload(str(marker)), b"fine_labels": [0]}, f, protocol=2)
    with pytest.raises(ValueError) as excinfo:
        read_cifar_pickle(str(bad), 100)
    message = str(excinfo.value)
    assert str(bad) in message and "refused" in message and "io.open" in message
    assert not marker.exists()
    # a genuine file still reads, whichever protocol wrote it
    rows = np.arange(2 * 3072, dtype=np.int64).reshape(2, 3072).astype(np.uint8)
    for protocol in (2, 4, 5):
        good = tmp_path / f"test_{protocol}"
        with open(good, "wb") as f:
            pickle.dump({b"data": rows, b"fine_labels": [3, 7], b"batch_label": b"testing"}, f, protocol=protocol)
        images, labels = read_cifar_pickle(str(good), 100)
        assert images.shape == (2, 32, 32, 3) and labels.tolist() == [3, 7]
        assert images[0, 0, 0].tolist() == [0, 1024 % 256, 2048 % 256]


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_checkpoints_and_mindir_get_the_mode_of_the_users_umask(tmp_path, mask, mode):
    """MindSpore's writers leave their files read-only for the owner (0400); ours follow the umask."""
    import stat

    import mindspore as ms
    from mindspore import nn

    from src.checkpoint import save_atomic

    net = nn.Dense(3, 2)
    old = os.umask(mask)
    try:
        ckpt = save_atomic(net, str(tmp_path / "model.ckpt"))
        mindir = str(tmp_path / "model.mindir")
        with atomic_output(mindir) as tmp:
            ms.export(net, ms.Tensor(np.zeros((1, 3), np.float32)), file_name=tmp[:-len(".mindir")],
                      file_format="MINDIR")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(ckpt).st_mode) == mode
    assert stat.S_IMODE(os.stat(mindir).st_mode) == mode
    assert listing(tmp_path) == ["model.ckpt", "model.mindir"]
