"""Config: defaults, base: merging, overrides, the one-line errors, save/load round trip."""
import os

import pytest
import yaml

from src.config import (DEFAULTS, KEYS, build_arg_parser, config_from_args, load_config, parse_overrides,
                        save_config)

MINIMAL = ["student=resnet18", "distiller=none", "dataset=fake"]


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def one_line_error(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_defaults_are_valid_for_every_key():
    cfg = load_config(None, MINIMAL)
    assert set(cfg) == set(KEYS)
    assert cfg.epochs == DEFAULTS["epochs"] and cfg["lr"] == pytest.approx(0.1)
    assert cfg.num_classes == 1000 and cfg.mean == pytest.approx([0.485, 0.456, 0.406])


def test_base_chain_merges_and_child_wins(tmp_path):
    write(tmp_path / "common" / "root.yaml", "epochs: 7\nlr: 0.5\nbatch_size: 16\ndataset: fake\n")
    write(tmp_path / "common" / "mid.yaml", "base: root.yaml\nlr: 0.25\nopt: adamw\n")
    child = write(tmp_path / "recipes" / "child.yaml",
                  "base: ../common/mid.yaml\nlr: 0.05\nstudent: resnet18\ndistiller: none\n")
    cfg = load_config(child)
    assert cfg.epochs == 7 and cfg.batch_size == 16  # from the root
    assert cfg.opt == "adamw"  # from the middle
    assert cfg.lr == pytest.approx(0.05)  # the child wins


def test_base_loop_is_an_error(tmp_path):
    a = write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ValueError, match="loops"):
        load_config(a)


def test_overrides_all_forms_beat_the_file(tmp_path):
    path = write(tmp_path / "c.yaml", "student: resnet18\ndistiller: none\ndataset: fake\nlr: 0.5\nepochs: 3\n")
    cfg = load_config(path, ["lr=0.01", "--epochs", "9", "--batch-size=32", "--eps", "1", "1.5", "1.5",
                             "--stages", "2,4", "--ema", "--mixup", "0.8", "--weight_decay", "1e-3",
                             "auto_augment=rand-m9-mstd0.5-inc1", "--teacher_ckpt", "null", "device_target=gpu"])
    assert cfg.lr == pytest.approx(0.01) and cfg.epochs == 9 and cfg.batch_size == 32
    assert cfg.eps == [1.0, 1.5, 1.5] and cfg.stages == [2, 4]
    assert cfg.ema is True and cfg.mixup == pytest.approx(0.8)
    assert cfg.weight_decay == pytest.approx(1e-3) and cfg.teacher_ckpt is None
    assert cfg.auto_augment == "rand-m9-mstd0.5-inc1" and cfg.device_target == "GPU"


def test_parse_overrides_negative_values_and_stray_tokens():
    assert parse_overrides(["--lr", "-0.5", "temperature=2"]) == {"lr": -0.5, "temperature": 2}
    with pytest.raises(ValueError, match="unexpected argument '3'"):
        parse_overrides(["--epochs", "2", "3"])
    with pytest.raises(ValueError, match="'epochs' needs a value"):
        parse_overrides(["--epochs"])


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path / "bad.yaml", "student: resnet18\nepoch: 3\n")
    with pytest.raises(ValueError) as excinfo:
        load_config(path)
    message = one_line_error(excinfo)
    assert path in message and "'epoch'" in message and "did you mean 'epochs'" in message
    with pytest.raises(ValueError, match="command line: unknown config key 'learning_rate'"):
        load_config(None, MINIMAL + ["learning_rate=0.1"])


@pytest.mark.parametrize("text, key, expected", [
    ("epochs: abc", "epochs", "an integer"),
    ("epochs: 2.5", "epochs", "an integer"),
    ("lr: fast", "lr", "a number"),
    ("ema: 1", "ema", "true or false"),
    ("scale: [0.1, 0.5, 1.0]", "scale", "length 2"),
    ("opt: adam", "opt", "sgd|adamw|lamb"),
    ("student: null", "student", "required key"),
    ("batch_size: 0", "batch_size", "positive"),
    ("eps: [1.0, 1.5]", "eps", "1 value or 5"),
    ("mean: [123.7, 116.3, 103.5]", "mean", "0..1 scale"),
    ("nested:\n  lr: 1", "nested", "unknown config key"),
])
def test_wrong_values_name_key_and_file(tmp_path, text, key, expected):
    path = write(tmp_path / "c.yaml", "student: resnet18\ndistiller: none\ndataset: fake\n" + text + "\n")
    with pytest.raises(ValueError) as excinfo:
        load_config(path)
    message = one_line_error(excinfo)
    assert path in message and f"'{key}'" in message and expected in message


def test_wrong_type_on_the_command_line():
    with pytest.raises(ValueError, match="command line: key 'epochs' expects an integer, got 'abc'"):
        load_config(None, MINIMAL + ["epochs=abc"])


def test_required_keys_depend_on_dataset_and_distiller(tmp_path):
    path = write(tmp_path / "c.yaml", "student: resnet18\ndistiller: none\ndataset: cifar100\n")
    with pytest.raises(ValueError) as excinfo:
        load_config(path)
    message = one_line_error(excinfo)
    assert path in message and "'data_dir'" in message and "cifar100" in message
    with pytest.raises(ValueError, match="required key 'teacher'"):
        load_config(None, ["student=resnet18", "dataset=fake", "distiller=ofa"])
    with pytest.raises(ValueError, match="required key 'num_classes'"):
        load_config(None, ["student=resnet18", "distiller=none", "dataset=imagefolder", "data_dir=/x"])
    assert load_config(None, ["student=resnet18", "teacher=deit_tiny", "dataset=fake"]).distiller == "ofa"


def test_dataset_defaults_fill_mean_std_and_classes():
    cfg = load_config(None, ["student=resnet18", "distiller=none", "dataset=cifar100", "data_dir=/x"])
    assert cfg.num_classes == 100
    assert cfg.mean == pytest.approx([0.5071, 0.4865, 0.4409]) and cfg.std == pytest.approx([0.2673, 0.2564, 0.2762])
    cfg = load_config(None, ["student=resnet18", "distiller=none", "dataset=fashion_mnist", "data_dir=/x"])
    assert cfg.mean == pytest.approx([0.2860] * 3) and cfg.std == pytest.approx([0.3530] * 3)
    cfg = load_config(None, ["student=resnet18", "distiller=none", "dataset=mnist", "data_dir=/x", "in_channels=1"])
    assert cfg.mean == pytest.approx([0.1307])
    with pytest.raises(ValueError, match="'num_classes' must be 10 for dataset cifar10"):
        load_config(None, ["student=resnet18", "distiller=none", "dataset=cifar10", "data_dir=/x", "num_classes=100"])
    with pytest.raises(ValueError, match="'batch_size' must be even"):
        load_config(None, MINIMAL + ["batch_size=7", "cutmix=1.0"])


def test_save_config_round_trip_is_atomic(tmp_path):
    cfg = load_config(None, MINIMAL + ["lr=0.003", "eps=[1.5]", "scale=[0.5,1.0]", "resume=null"])
    out = tmp_path / "run" / "config.yaml"
    save_config(cfg, str(out))
    assert os.listdir(tmp_path / "run") == ["config.yaml"]  # no temp file left behind
    with open(out) as f:
        assert yaml.safe_load(f)["lr"] == pytest.approx(0.003)
    again = load_config(str(out))
    assert again == cfg
    cfg.lr = 0.5
    save_config(cfg, str(out))  # replaces the previous file
    assert load_config(str(out)).lr == pytest.approx(0.5)


def test_config_from_args_with_entry_point_options(tmp_path):
    path = write(tmp_path / "c.yaml", "student: resnet18\ndistiller: none\ndataset: fake\n")
    parser = build_arg_parser("eval")
    parser.add_argument("--checkpoint", required=True)
    args, cfg = config_from_args(["--config", path, "--checkpoint", "w.ckpt", "--batch_size", "8", "seed=3"], parser)
    assert args.checkpoint == "w.ckpt" and cfg.batch_size == 8 and cfg.seed == 3
    assert not any(name.startswith("config key") for name in vars(args))  # key options become the config only
    text = parser.format_help()
    assert "--student TEXT" in text and "student model name" in text  # the key list is in --help
    with pytest.raises(ValueError, match="not found"):
        config_from_args(["--config", str(tmp_path / "missing.yaml")])


def test_command_line_is_argparse_generated_from_the_key_table():
    parser = build_arg_parser("train")
    options = {a.dest[len("config key "):] for a in parser._actions if a.dest.startswith("config key ")}
    assert options == set(KEYS)  # one option per key, none hand-written
    text = parser.format_help()
    for name, key in KEYS.items():
        assert f"--{name} " in text and key.help.split(" (")[0][:25] in " ".join(text.split())
    assert "--batch-size" not in text  # the dashed spelling works (below) but is not listed twice
    assert parse_overrides(["--batch-size", "4", "--log-interval=2", "save_every_steps=3"]) == \
        {"batch_size": 4, "log_interval": 2, "save_every_steps": 3}
    with pytest.raises(SystemExit) as excinfo:
        parser.parse_args(["-h"])
    assert excinfo.value.code == 0


def test_an_entry_point_lists_and_takes_only_the_keys_it_uses(tmp_path):
    path = write(tmp_path / "c.yaml", "student: resnet18\nteacher: deit_tiny\ndataset: fake\nlr: 0.5\n")
    parser = build_arg_parser("export", keys=("student", "image_size", "num_classes"))
    parser.add_argument("--batch_size", type=int, default=1)  # its own option, not the config key
    text = parser.format_help()
    assert "--image_size" in text and "--lr" not in text and "--teacher_ckpt" not in text
    args, cfg = config_from_args(["--config", path, "--batch_size", "2", "image_size=64"], parser,
                                 for_training=False)
    assert args.batch_size == 2 and cfg.batch_size == DEFAULTS["batch_size"] and cfg.image_size == 64
    assert cfg.lr == pytest.approx(0.5)  # the file may hold any key
    with pytest.raises(ValueError) as excinfo:
        config_from_args(["--config", path, "lr=0.1"], parser, for_training=False)
    assert "key 'lr' is not used by" in one_line_error(excinfo)
    with pytest.raises(ValueError, match="unknown config key 'lrr'"):
        config_from_args(["--config", path, "--lrr", "0.1"], parser, for_training=False)
    # without the training requirements, a config that names no data_dir still loads for export
    cfg = load_config(None, ["student=resnet18", "dataset=cifar100"], for_training=False)
    assert cfg.data_dir is None


def test_non_utf8_config_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("student: r\xe9snet18\n".encode("latin-1"))
    with pytest.raises(ValueError) as excinfo:
        load_config(str(path))
    message = one_line_error(excinfo)
    assert str(path) in message and "UTF-8" in message


def test_decay_rate_above_one_is_refused():
    with pytest.raises(ValueError, match="'decay_rate' must be in \\[0, 1\\]"):
        load_config(None, MINIMAL + ["decay_rate=1.5"])


def test_one_channel_defaults_are_the_gray_value_of_rgb_statistics(tmp_path):
    cfg = load_config(None, MINIMAL + ["in_channels=1"])  # fake data: ImageNet statistics, made gray
    assert cfg.mean == pytest.approx([0.299 * 0.485 + 0.587 * 0.456 + 0.114 * 0.406])
    assert len(cfg.std) == 1
    path = write(tmp_path / "c.yaml", "student: resnet18\ndistiller: none\ndataset: fake\nmean: [0.5, 0.4, 0.3]\n")
    with pytest.raises(ValueError) as excinfo:  # values the user set are never guessed away
        load_config(path, ["in_channels=1"])
    assert path in one_line_error(excinfo) and "'mean'" in str(excinfo.value)


def test_precision_is_float32_on_cpu_and_the_reference_amp_on_accelerators():
    from src.precision import resolve_precision

    cpu = resolve_precision(load_config(None, MINIMAL))
    assert (cpu.amp_level, cpu.loss_scale_type) == ("O0", "none")
    for device in ("GPU", "Ascend"):
        acc = resolve_precision(load_config(None, MINIMAL + [f"device_target={device}"]))
        # PyTorch native AMP (autocast + GradScaler defaults): float16 compute, dynamic scale 2**16, window 2000
        assert (acc.amp_level, acc.loss_scale_type, acc.loss_scale, acc.scale_window) == ("O1", "dynamic", 65536.0,
                                                                                       2000)
    explicit = resolve_precision(load_config(None, MINIMAL + ["device_target=GPU", "amp_level=O0"]))
    assert (explicit.amp_level, explicit.loss_scale_type) == ("O0", "none")
    static = resolve_precision(load_config(None, MINIMAL + ["amp_level=O2", "loss_scale_type=static",
                                                            "loss_scale=128"]))
    assert (static.amp_level, static.loss_scale_type, static.loss_scale) == ("O2", "static", 128.0)


def test_image_folder_classes_are_counted_from_the_train_folders(tmp_path):
    for name in ("cat", "dog", "fox", ".cache"):  # a hidden folder is not a class
        os.makedirs(tmp_path / "train" / name)
    (tmp_path / "train" / "notes.txt").write_text("not a class")
    cfg = load_config(None, ["student=resnet18", "distiller=none", "dataset=imagefolder", f"data_dir={tmp_path}"])
    assert cfg.num_classes == 3
    given = load_config(None, ["student=resnet18", "distiller=none", "dataset=imagefolder", f"data_dir={tmp_path}",
                               "num_classes=5"])
    assert given.num_classes == 5  # a value given is kept; the reader then names the mismatch


def test_ofa_branch_weight_has_its_own_key_and_old_three_weights_still_read(tmp_path):
    base = ["student=resnet18", "teacher=resnet18", "dataset=fake"]
    assert load_config(None, base).ofa_branch_weight == 1.0
    old = load_config(write(tmp_path / "old.yaml", "loss_weights: [1.0, 0.5, 0.1]\n"), base)
    assert old.loss_weights == [1.0, 0.5] and old.ofa_branch_weight == 0.1
    both = load_config(write(tmp_path / "both.yaml", "loss_weights: [1.0, 0.5, 0.1]\nofa_branch_weight: 0.3\n"), base)
    assert both.loss_weights == [1.0, 0.5] and both.ofa_branch_weight == 0.3  # the key of its own wins
    save_config(old, str(tmp_path / "resolved.yaml"))  # the resolved form reads back the same
    assert load_config(str(tmp_path / "resolved.yaml")).ofa_branch_weight == 0.1


def test_eps_zero_is_refused_when_the_config_is_read(tmp_path):
    path = write(tmp_path / "c.yaml", "student: resnet18\nteacher: resnet18\ndataset: fake\neps: [1.0, 0.0]\n"
                                      "stages: [4]\n")
    with pytest.raises(ValueError) as excinfo:
        load_config(path)
    message = one_line_error(excinfo)
    assert path in message and "'eps'" in message and "eps=0" in message
