"""``student_ckpt``: the student starts from a MindSpore checkpoint (converted timm weights included), its
position embedding resampled to the run's size, a wrong checkpoint refused naming its tensors in one
line, and a resumed run taking the student from the resume state instead (with a log line)."""
import logging

import numpy as np
import pytest

import mindspore as ms


def cfg_for(tmp_path, **keys):
    from src.config import load_config

    base = dict(dataset="fake", student="vit_p4_pico", distiller="none", num_classes=4, image_size=32,
                output_dir=str(tmp_path / "run"))
    base.update(keys)
    return load_config(None, base)


def saved_student(tmp_path, arch="vit_p4_pico", image_size=16, seed=3):
    from src.checkpoint import save_atomic
    from src.models import create_model

    ms.set_seed(seed)
    np.random.seed(seed)
    model = create_model(arch, num_classes=4, image_size=image_size)
    path = str(tmp_path / f"{arch}_{image_size}.ckpt")
    save_atomic(model, path)
    return path, {p.name: p.asnumpy().copy() for p in model.get_parameters()}


def test_student_starts_from_the_checkpoint_with_its_position_embedding_resampled(tmp_path, caplog):
    from src.engine.builders import build_student, load_student_checkpoint

    path, saved = saved_student(tmp_path, image_size=16)  # 4x4 patch grid; the run is at 32 px: 8x8
    cfg = cfg_for(tmp_path, student_ckpt=path)
    student = build_student(cfg)
    with caplog.at_level(logging.INFO):
        assert load_student_checkpoint(cfg, student) is True
    got = {p.name: p.asnumpy() for p in student.get_parameters()}
    assert got["pos_embed"].shape == (1, 65, 96) and saved["pos_embed"].shape == (1, 17, 96)
    np.testing.assert_array_equal(got["pos_embed"][:, :1], saved["pos_embed"][:, :1])  # the cls token's kept
    for name, value in saved.items():
        if name != "pos_embed":
            np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert "initialised from student_ckpt" in caplog.text


def test_converted_timm_weights_load_as_student_ckpt(tmp_path):
    torch = pytest.importorskip("torch", reason="needs PyTorch (test-only): pip install torch==2.13.0 (CPU)")
    from benchmarks.timm_twin import create_twin, import_timm
    from src.engine.builders import build_student, load_student_checkpoint
    from tools.convert_checkpoint import main as convert

    torch.manual_seed(0)
    twin = create_twin(import_timm(), "resnet10", num_classes=4, image_size=32)
    twin.eval()
    src = str(tmp_path / "resnet10.pth")
    torch.save(twin.state_dict(), src)
    dst = str(tmp_path / "resnet10.ckpt")
    assert convert(["--arch", "resnet10", "--src", src, "--dst", dst]) == 0
    cfg = cfg_for(tmp_path, student="resnet10", student_ckpt=dst)
    student = build_student(cfg)
    load_student_checkpoint(cfg, student)
    student.set_train(False)
    x = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
    with torch.no_grad():
        want = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(student(ms.Tensor(x)).asnumpy(), want, rtol=1e-4, atol=1e-4)


def test_a_checkpoint_of_another_model_is_refused_naming_its_tensors_in_one_line(tmp_path):
    from src.engine.builders import build_student, load_student_checkpoint

    path, _ = saved_student(tmp_path, arch="resnet10", image_size=32)
    cfg = cfg_for(tmp_path, student_ckpt=path)
    with pytest.raises(ValueError) as err:
        load_student_checkpoint(cfg, build_student(cfg))
    text = str(err.value)
    assert "\n" not in text and path in text and "missing" in text and "unexpected" in text
    assert "conv1.weight" in text  # a tensor of the checkpoint that has no place in the ViT


def test_resume_wins_over_student_ckpt_and_says_so(tmp_path, caplog):
    from src.engine.builders import build_student, load_student_checkpoint

    cfg = cfg_for(tmp_path, student_ckpt=str(tmp_path / "never_read.ckpt"))
    student = build_student(cfg)
    before = {p.name: p.asnumpy().copy() for p in student.get_parameters()}
    with caplog.at_level(logging.INFO):
        assert load_student_checkpoint(cfg, student, resuming=True) is False
    assert "resume wins over student_ckpt" in caplog.text
    for p in student.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), before[p.name])


def test_the_trainer_loads_student_ckpt_unless_it_resumes(tmp_path, monkeypatch):
    from src.engine import trainer as trainer_module

    calls = []
    monkeypatch.setattr(trainer_module, "load_student_checkpoint",
                        lambda cfg, student, resuming=False: calls.append(resuming))
    monkeypatch.setattr(trainer_module, "build_teacher_source", lambda cfg: (_ for _ in ()).throw(RuntimeError("stop")))
    cfg = cfg_for(tmp_path, distiller="kd", teacher="resnet10", student_ckpt="x.ckpt")
    for resume, expected in ((None, False), ("auto", True)):
        cfg.resume = resume
        with pytest.raises(RuntimeError, match="stop"):
            trainer_module.Trainer(cfg)
    assert calls == [False, True]
