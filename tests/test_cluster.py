"""Cluster launches: rank tables read per server, the launchers' node options and refusals (dry runs and a
stand-in Python, no devices needed), caller-relative paths, device_target auto, and two msrun nodes on
127.0.0.1 that train the one-node weights and resume after a worker is killed (slow)."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from src.launch.rank_table import Worker, read_rank_table, server_plan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "scripts", "run_distribute_train.sh")
CACHE = os.path.join(ROOT, "scripts", "run_distribute_cache.sh")


def write_table(path, servers):
    """A version 1.0 rank table: ``servers`` is ``[(server_id, [(device_id, rank_id), ...]), ...]``."""
    table = {"version": "1.0", "server_count": str(len(servers)), "status": "completed",
             "server_list": [{"server_id": sid, "host_nic_ip": "reserve",
                              "device": [{"device_id": str(d), "device_ip": f"192.168.{i}.{d}", "rank_id": str(r)}
                                         for d, r in devices]}
                             for i, (sid, devices) in enumerate(servers)]}
    path.write_text(json.dumps(table))
    return str(path)


def bash(script, *args, cwd=None, env=None, timeout=60):
    return subprocess.run(["bash", script, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("student: resnet10\n")
    return str(path)


# ----------------------------------------------------------------------------- rank tables (fast)

def test_one_server_table_gives_its_ranks_and_devices(tmp_path):
    # a 4-card job on devices 4..7 of one server: RANK_ID and DEVICE_ID differ
    table = write_table(tmp_path / "one.json", [("10.0.0.1", [(4, 0), (5, 1), (6, 2), (7, 3)])])
    plan = server_plan(table, 4, addresses={"127.0.0.1", "10.0.0.1"})
    assert (plan.server_index, plan.server_id, plan.rank_size) == (0, "10.0.0.1", 4)
    assert plan.workers == (Worker(0, 4), Worker(1, 5), Worker(2, 6), Worker(3, 7))


def test_two_server_table_gives_every_process_of_each_server(tmp_path, config):
    # server B lists its devices out of order: each process still gets the pair the table gives it
    servers = [("10.0.0.1", [(d, d) for d in range(8)]), ("10.0.0.2", [(7 - d, 15 - d) for d in range(8)])]
    table = write_table(tmp_path / "two.json", servers)
    for index, (server_id, devices) in enumerate(servers):
        expected = sorted((rank, device) for device, rank in devices)
        by_address = server_plan(table, 8, addresses={server_id, "127.0.0.1"})
        by_index = server_plan(table, 8, server_index=index, addresses=set())
        for plan in (by_address, by_index):
            assert plan.server_index == index and plan.rank_size == 16
            assert [(w.rank_id, w.device_id) for w in plan.workers] == expected
        # what the launcher would start there, with each worker's log
        proc = bash(TRAIN, "--rank_table", table, "--server_index", str(index), "--dry_run", "8", config,
                    env={"LOG_DIR": str(tmp_path / "logs")})
        assert proc.returncode == 0, proc.stderr
        started = re.findall(r"rank (\d+) on device (\d+): log (\S+)", proc.stdout)
        assert [(int(r), int(d)) for r, d, _ in started] == expected
        assert [log for _, _, log in started] == [str(tmp_path / "logs" / f"worker_{r}.log") for r, _ in expected]
        assert f"server {index} ({server_id}) starts 8 of 16 ranks" in proc.stdout


@pytest.mark.parametrize("mutate, expected", [
    (lambda t: t["server_list"][1]["device"].pop(), "has 7 device(s) in the table, but DEVICES_PER_NODE is 8"),
    (lambda t: t["server_list"][1]["device"][0].update(rank_id="3"), "rank_id 3 appears twice"),
    (lambda t: t["server_list"][1]["device"][0].update(rank_id="16"), "rank 8 is missing"),
    (lambda t: t["server_list"][0]["device"][1].update(device_id="0"), "lists device_id 0 twice"),
    (lambda t: t["server_list"][0]["device"][1].update(device_id="x"), "'device_id' as a non-negative integer"),
    (lambda t: t.update(status="initializing"), "not 'completed'"),
    (lambda t: t.pop("server_list"), "non-empty 'server_list'"),
])
def test_inconsistent_tables_are_one_line_refusals(tmp_path, mutate, expected):
    path = tmp_path / "t.json"
    write_table(path, [("10.0.0.1", [(d, d) for d in range(8)]), ("10.0.0.2", [(d, 8 + d) for d in range(8)])])
    table = json.loads(path.read_text())
    mutate(table)
    path.write_text(json.dumps(table))
    with pytest.raises(ValueError) as excinfo:
        server_plan(str(path), 8, server_index=1)
    message = str(excinfo.value)
    assert expected in message and message.startswith(str(path)) and "\n" not in message


def test_table_server_not_found_and_bad_files_are_one_line_script_errors(tmp_path, config):
    table = write_table(tmp_path / "t.json", [("10.9.9.1", [(0, 0)]), ("10.9.9.2", [(0, 1)])])
    proc = bash(TRAIN, "--rank_table", table, "1", config)  # this machine is neither server
    assert proc.returncode == 2 and "none of the servers (10.9.9.1, 10.9.9.2) is this machine" in proc.stderr
    assert "--server_index" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = bash(TRAIN, "--rank_table", table, "--server_index", "2", "1", config)
    assert proc.returncode == 2 and "outside the table's 2 server(s)" in proc.stderr
    (tmp_path / "bad.json").write_text("{not json")
    proc = bash(TRAIN, "--rank_table", str(tmp_path / "bad.json"), "--server_index", "0", "1", config)
    assert proc.returncode == 2 and "not a JSON rank table" in proc.stderr
    assert read_rank_table(table)[1] == ("10.9.9.2", [Worker(1, 0)])


FAKE_PYTHON = """#!/bin/sh
# stands in for Python: the launcher's own helper runs for real, a worker fails (rank 1) or waits (the others)
case "$1" in *rank_table.py) exec "{python}" "$@" ;; esac
echo "worker RANK_ID=$RANK_ID DEVICE_ID=$DEVICE_ID RANK_SIZE=$RANK_SIZE table=$RANK_TABLE_FILE"
if [ "$RANK_ID" = 0 ]; then touch "{ready}"; fi
if [ "$RANK_ID" = 1 ]; then
  # fail only once rank 0 has written its first line (at most 10 s), so the stopped rank's log is not empty
  i=0; while [ ! -e "{ready}" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
  echo "rank 1 ran out of memory"; exit 3
fi
sleep 60
"""


def test_a_failing_rank_table_worker_stops_the_others_and_shows_its_log(tmp_path, config):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable, ready=tmp_path / "rank0_started"))
    fake.chmod(0o755)
    table = write_table(tmp_path / "t.json", [("10.9.9.1", [(2, 0), (3, 1)])])
    start = time.monotonic()
    proc = bash(TRAIN, "--rank_table", table, "--server_index", "0", "2", config,
                env={"PYTHON": str(fake), "LOG_DIR": str(tmp_path / "logs")})
    assert time.monotonic() - start < 30  # the waiting worker was stopped, not waited for
    assert proc.returncode == 3
    assert f"error: rank 1 exited with code 3; the job was stopped. Last lines of {tmp_path}/logs/worker_1.log:" \
        in proc.stderr
    assert "  | rank 1 ran out of memory" in proc.stderr
    assert "rank 0 on device 2: log" in proc.stdout and "rank 1 on device 3: log" in proc.stdout
    first = (tmp_path / "logs" / "worker_0.log").read_text()
    assert f"RANK_ID=0 DEVICE_ID=2 RANK_SIZE=2 table={table}" in first


# ----------------------------------------------------------------------------- node options (fast)

def test_node_options_plan_and_refusals(tmp_path, config):
    proc = bash(TRAIN, "--nodes", "2", "--node_rank", "1", "--master_addr", "10.1.2.3", "--dry_run", "8", config,
                env={"MASTER_PORT": "29555", "LOG_DIR": str(tmp_path / "logs")})
    assert proc.returncode == 0, proc.stderr
    assert "node 1 of 2 (master 10.1.2.3:29555): ranks 8..15 of 16" in proc.stdout
    assert f"rank 15 on device 7: log {tmp_path}/logs/worker_15.log" in proc.stdout
    run = proc.stdout.split("would run: ")[1]
    for flag in ("--worker_num=16", "--local_worker_num=8", "--node_rank=1", "--master_addr=10.1.2.3",
                 "--master_port=29555", "--cluster_time_out=300", "train.py --config", "distribute=true"):
        assert flag in run, flag
    proc = bash(TRAIN, "--dry_run", "2", config)  # one node stays the default
    assert "--worker_num=2 --local_worker_num=2" in proc.stdout and "master 127.0.0.1:8118" in proc.stdout
    proc = bash(CACHE, "--nodes=2", "--node_rank=0", "--master_addr=10.1.2.3", "--dry_run", "4", config,
                "--out", "shared/cache", "--views", "2", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"tools/cache_teacher.py --config {config} --out {tmp_path}/shared/cache --views 2" in proc.stdout
    assert "distribute=true" not in proc.stdout

    refusals = [
        (["--nodes", "2", "8", config], {}, "--nodes 2 needs --node_rank (0..1) and --master_addr"),
        (["--nodes", "2", "--node_rank", "2", "--master_addr", "h", "8", config], {}, "--node_rank 2 is not in 0..1"),
        (["--nodes", "0", "8", config], {}, "--nodes 0 is not a positive integer"),
        (["--rank_table", config, "--nodes", "2", "8", config], {}, "--rank_table takes the servers from the table"),
        (["--server_index", "1", "8", config], {}, "--server_index goes with --rank_table"),
        (["--bogus", "8", config], {}, "unknown option --bogus"),
        (["8", config], {"MASTER_PORT": "80"}, "MASTER_PORT=80 is not a port number"),
        (["8", config], {"CLUSTER_TIMEOUT": "soon"}, "CLUSTER_TIMEOUT=soon is not a positive number"),
        (["x", config], {}, "DEVICES_PER_NODE=x is not a positive integer"),
    ]
    for args, env, expected in refusals:
        proc = bash(TRAIN, *args, env=env)
        assert proc.returncode == 2 and expected in proc.stderr, (args, proc.stderr)
        assert proc.stderr.startswith("error: ")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_node_that_cannot_reach_the_master_fails_in_bounded_time_naming_it(tmp_path, config):
    port = _free_port()  # nobody listens there
    start = time.monotonic()
    proc = bash(TRAIN, "--nodes", "2", "--node_rank", "1", "--master_addr", "127.0.0.1", "1", config,
                env={"MASTER_PORT": str(port), "CLUSTER_TIMEOUT": "2", "LOG_DIR": str(tmp_path / "logs")})
    assert time.monotonic() - start < 20
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr
    assert f"cannot reach the master at 127.0.0.1:{port} within 2 s" in errors[0]
    assert not (tmp_path / "logs").exists() or not os.listdir(tmp_path / "logs")  # no worker was started


# ----------------------------------------------------------------------------- caller-relative paths (fast)

ECHO_PYTHON = """#!/bin/sh
printf '%s\\n' "$@"
"""


def test_launchers_resolve_relative_paths_from_the_callers_folder(tmp_path, config):
    """From another folder, output_dir=rel_out is under that folder and data_dir=rel is checked there."""
    caller = tmp_path / "caller"
    (caller / "rel_data").mkdir(parents=True)
    (caller / "ckpt.ckpt").write_text("x")
    fake = tmp_path / "python"
    fake.write_text(ECHO_PYTHON)
    fake.chmod(0o755)
    env = {"PYTHON": str(fake)}
    scripts = os.path.join(ROOT, "scripts")

    proc = bash(os.path.join(scripts, "run_standalone_train.sh"), os.path.relpath(config, caller), "output_dir=rel_out",
                "data_dir=rel_data", "--teacher_ckpt", "ckpt.ckpt", "resume=auto", "teacher_cache=null",
                cwd=str(caller), env=env)
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.splitlines()
    assert args[:3] == ["train.py", "--config", config]
    assert f"output_dir={caller}/rel_out" in args and f"data_dir={caller}/rel_data" in args
    assert args[args.index("--teacher_ckpt") + 1] == f"{caller}/ckpt.ckpt"
    assert "resume=auto" in args and "teacher_cache=null" in args

    # a folder that exists only relative to the repository is not the caller's
    os.makedirs(os.path.join(ROOT, "configs"), exist_ok=True)
    proc = bash(os.path.join(scripts, "run_standalone_train.sh"), config, "data_dir=configs", cwd=str(caller), env=env)
    assert proc.returncode == 2 and f"DATASET_PATH={caller}/configs is not a directory" in proc.stderr

    proc = bash(os.path.join(scripts, "run_eval.sh"), config, "ckpt.ckpt", "--json", "m.json", cwd=str(caller), env=env)
    args = proc.stdout.splitlines()
    assert args[args.index("--checkpoint") + 1] == f"{caller}/ckpt.ckpt" and f"{caller}/m.json" in args
    proc = bash(os.path.join(scripts, "run_export.sh"), config, "ckpt.ckpt", "--file_name", "net", cwd=str(caller),
                env=env)
    assert f"{caller}/net" in proc.stdout.splitlines()
    proc = bash(os.path.join(scripts, "run_fashion_mnist_demo.sh"), "rel_data", "--work-dir", "w", cwd=str(caller),
                env=env)
    assert proc.stdout.splitlines()[-4:] == ["--data-dir", f"{caller}/rel_data", "--work-dir", f"{caller}/w"]
    proc = bash(os.path.join(scripts, "run_fashion_mnist_study.sh"), "rel_data", "res", "--work-dir=w",
                cwd=str(caller), env=env)
    assert [f"{caller}/res", f"--work-dir={caller}/w"] == proc.stdout.splitlines()[-2:]
    proc = bash(TRAIN, "--dry_run", "2", config, "output_dir=rel_out", cwd=str(caller))
    assert f"output_dir={caller}/rel_out" in proc.stdout and f"--log_dir={caller}/msrun_log" in proc.stdout


# ----------------------------------------------------------------------------- device_target auto (fast)

def test_device_target_auto_takes_the_first_usable_backend(monkeypatch):
    import mindspore as ms

    from src import device

    usable = device.usable_backends()
    assert usable[-1] == "CPU" and usable == [b for b in device.AUTO_ORDER if b in usable]
    assert device.resolve_device_target("auto") == usable[0]
    assert device.resolve_device_target("CPU") == "CPU"
    missing = [b for b in ("Ascend", "GPU") if b not in usable]
    if not missing:
        print("every backend is usable here: no refusal to check")
    for backend in missing:
        with pytest.raises(ValueError) as excinfo:
            device.resolve_device_target(backend)
        message = str(excinfo.value)
        assert message.startswith(f"device_target={backend}: the installed MindSpore {ms.__version__} can use")
        assert " and ".join(usable) + " only" in message and "\n" not in message
    monkeypatch.setattr(device, "usable_backends", lambda: ["GPU", "CPU"])
    assert device.resolve_device_target("auto") == "GPU"


def test_setup_context_resolves_auto_and_refuses_an_unusable_backend():
    from src.config import load_config
    from src.engine.builders import setup_context
    from src.device import usable_backends

    cfg = load_config(None, ["student=resnet10", "dataset=fake", "distiller=none"])
    assert cfg.device_target == "auto"
    setup_context(cfg, distributed=False)
    assert cfg.device_target == usable_backends()[0]
    missing = [b for b in ("Ascend", "GPU") if b not in usable_backends()]
    if missing:
        cfg = load_config(None, ["student=resnet10", "dataset=fake", "distiller=none", f"device_target={missing[0]}"])
        with pytest.raises(ValueError, match=f"device_target={missing[0]}: the installed MindSpore"):
            setup_context(cfg, distributed=False)


# ----------------------------------------------------------------------------- two loopback nodes (slow)

TINY = ("dataset: fake\nfake_samples: 64\nnum_classes: 3\nimage_size: 16\nbatch_size: 4\nnum_workers: 1\n"
        "epochs: 1\nopt: adamw\nlr: 1.0e-3\nmin_lr: 1.0e-5\nweight_decay: 0.05\nscheduler: cosine\n"
        "warmup_epochs: 0\ncolor_jitter: 0.0\nlog_interval: 1\nsave_every_steps: 2\n"
        "distiller: none\nstudent: resnet10\nrank_checkpoints: true\n")


def _descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def _is_train_worker(pid):
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            cmd = f.read().split("\0")
    except OSError:
        return False
    return len(cmd) > 1 and cmd[1] == "train.py"


def _loopback_job(cfg, out, logs, kill_at=None, env=None):
    """Two msrun nodes on 127.0.0.1 (node_rank 0 and 1, one CPU worker each), the same command on both
    (resume=auto); with ``kill_at``, rank 1's worker is killed (SIGKILL) once rank 0 logs that pattern.
    Returns the two nodes' (exit code, stdout + stderr)."""
    env = {**os.environ, "MASTER_PORT": str(_free_port()), "CLUSTER_TIMEOUT": "120", **(env or {})}
    nodes = []
    for rank in (0, 1):
        nodes.append(subprocess.Popen(
            ["bash", TRAIN, "--nodes", "2", "--node_rank", str(rank), "--master_addr", "127.0.0.1", "1", cfg,
             f"output_dir={out}", "resume=auto"],
            env={**env, "LOG_DIR": str(logs)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    killed = None
    if kill_at:
        # rank 1's worker is found first, so that the kill follows rank 0's log line within one short poll:
        # the tiny steps are fast and the epoch has few of them, so the window is small on a loaded machine
        log0, deadline, worker = logs / "worker_0.log", time.monotonic() + 300, None
        while killed is None and time.monotonic() < deadline and nodes[1].poll() is None:
            if worker is None:
                worker = next((pid for pid in _descendants(nodes[1].pid) if _is_train_worker(pid)), None)
            elif log0.is_file() and re.search(kill_at, log0.read_text(errors="replace")):
                os.kill(worker, signal.SIGKILL)
                killed = worker
            time.sleep(0.02 if worker else 0.2)
        assert killed, "rank 1's worker was not found to kill"
    results = [node.communicate(timeout=600) for node in nodes]
    return [(node.returncode, text) for node, (text, _) in zip(nodes, results)]


def _params(path):
    import mindspore as ms

    # the tensors of a checkpoint; resume.ckpt's meta.* strings (config, history with timings) are left out
    return {name: p.asnumpy() for name, p in ms.load_checkpoint(str(path)).items() if not name.startswith("meta.")}


@pytest.mark.slow
def test_two_loopback_nodes_train_the_one_node_weights_and_resume_after_a_killed_worker(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    one, two, broken = tmp_path / "one", tmp_path / "two", tmp_path / "broken"

    env = {**os.environ, "MASTER_PORT": str(_free_port()), "LOG_DIR": str(tmp_path / "one_logs")}
    proc = subprocess.run(["bash", TRAIN, "2", str(cfg), f"output_dir={one}"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (code0, out0), (code1, out1) = _loopback_job(str(cfg), two, tmp_path / "two_logs")
    assert code0 == 0 and code1 == 0, out0[-3000:] + out1[-3000:]
    assert "Start scheduler process" in out0 and "Start scheduler process" not in out1  # node 0 hosts it
    r0, r1 = _params(two / "rank_0" / "last.ckpt"), _params(two / "rank_1" / "last.ckpt")
    weights = [n for n in r0 if not n.endswith(("moving_mean", "moving_variance"))]
    assert len(weights) > 10 and r0.keys() == r1.keys()
    for name in weights:  # the ranks of the two nodes hold the same weights...
        np.testing.assert_array_equal(r0[name], r1[name], err_msg=name)
    assert any(not np.array_equal(r0[n], r1[n]) for n in r0 if n.endswith("moving_mean"))  # ...not the same BN
    for rank in ("rank_0", "rank_1"):
        # bit-identical to one node with two workers, BatchNorm statistics included: each rank sees the
        # same shard in the same order, wherever it runs
        a, b = _params(one / rank / "last.ckpt"), _params(two / rank / "last.ckpt")
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=f"{rank}: {name}")
    assert (two / "last.ckpt").read_bytes() and _params(two / "last.ckpt").keys() == r0.keys()

    # rank 1 killed mid-epoch: both nodes stop non-zero, node 1 names the rank and shows its log's end
    (code0, out0), (code1, out1) = _loopback_job(str(cfg), broken, tmp_path / "broken_logs",
                                                 kill_at=r"epoch 1/1 step 3/8 ",
                                                 env={"MS_NODE_TIMEOUT": "10"})  # node 0 notices in ~10 s, not ~30
    assert code0 != 0 and code1 != 0, out0[-2000:] + out1[-2000:]
    assert "error: rank 1 exited with code -9; the job was stopped. Last lines of" in out1, out1[-3000:]
    report = out1.split("error: rank 1 exited")[1]
    assert "  | " in report or "(the log is empty: ranks other than 0 log only warnings and errors)" in report
    assert "error: rank 0 exited with code" in out0, out0[-3000:]
    assert "  | " in out0.split("error: rank 0 exited")[1], out0[-3000:]
    from src.engine.trainer import read_resume_point

    epoch, step, _ = read_resume_point(str(broken / "resume.ckpt"))
    # a mid-epoch resume point before the kill (every 2 steps; the kill lands after rank 0's step 3, before the
    # epoch's 8th step on any machine this has run on)
    assert epoch == 0 and step in (2, 4, 6), (epoch, step)

    # the same command again continues both nodes from there to the uninterrupted weights, bit for bit
    (code0, out0), (code1, out1) = _loopback_job(str(cfg), broken, tmp_path / "resumed_logs")
    assert code0 == 0 and code1 == 0, out0[-3000:] + out1[-3000:]
    assert "resuming" in (tmp_path / "resumed_logs" / "worker_0.log").read_text()
    for name in ("last.ckpt", "resume.ckpt"):
        straight, resumed = _params(two / name), _params(broken / name)
        assert straight.keys() == resumed.keys()
        for key in straight:
            np.testing.assert_array_equal(straight[key], resumed[key], err_msg=f"{name}: {key}")
