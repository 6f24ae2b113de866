"""msrun for one node of a job, as run_distribute_*.sh start it (arguments: msrun's own, see msrun --help).

Three things on top of MindSpore's msrun:
- only the node with ``--node_rank 0`` hosts the scheduler. msrun starts one on every node whose addresses
  include ``--master_addr``, so two nodes on one machine (the loopback rehearsal of a cluster launch) would
  both start one and the second would fail on the taken port;
- a node other than node 0 first waits for the master's port, up to ``--cluster_time_out`` seconds, and
  fails with one line naming ADDR:PORT when it never answers (instead of a page of MindSpore errors);
- when a worker dies, msrun stops the others; this names the failing rank, its exit code and its log,
  and prints the log's last lines.
"""
import argparse
import atexit
import os
import shutil
import socket
import sys
import tempfile
import time

TAIL_LINES = 20


def _wait_for_master(addr, port, timeout_s):
    """True once ``addr:port`` accepts a TCP connection, False after ``timeout_s`` seconds of trying."""
    deadline = time.monotonic() + max(timeout_s, 1)
    while True:
        try:
            with socket.create_connection((addr, port), timeout=2):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def _tail(path, lines):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError as err:
        return [f"({path}: {err.strerror or err})"]
    return text.splitlines()[-lines:]


def _workers_use_this_python():
    """msrun starts every process as ``python SCRIPT`` from PATH: make that name this interpreter (the project's
    .venv when the script found it), also when the environment is not activated."""
    here = os.path.join(os.path.dirname(sys.executable), "python")
    if os.path.exists(here) and os.path.samefile(here, sys.executable):
        folder = os.path.dirname(sys.executable)
    else:
        folder = tempfile.mkdtemp(prefix="ofakd-msrun-")
        atexit.register(shutil.rmtree, folder, True)
        with open(os.path.join(folder, "python"), "w") as f:
            f.write(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        os.chmod(os.path.join(folder, "python"), 0o755)
    os.environ["PATH"] = folder + os.pathsep + os.environ.get("PATH", "")


def main(argv):
    pre = argparse.ArgumentParser(add_help=False)
    for flag, kind, default in (("--worker_num", int, 8), ("--local_worker_num", int, 8), ("--node_rank", int, -1),
                                ("--master_addr", str, "127.0.0.1"), ("--master_port", int, 8118),
                                ("--cluster_time_out", int, 600)):
        pre.add_argument(flag, type=kind, default=default)
    known, _ = pre.parse_known_args([a for a in argv if a not in ("-h", "--help")])
    several_nodes = known.local_worker_num < known.worker_num
    if several_nodes and known.node_rank > 0 and not _wait_for_master(known.master_addr, known.master_port,
                                                                       known.cluster_time_out):
        print(f"error: node {known.node_rank} cannot reach the master at {known.master_addr}:{known.master_port} "
              f"within {known.cluster_time_out} s (is node 0 started with the same --master_addr and MASTER_PORT, "
              f"and the port open?)", file=sys.stderr)
        return 1

    try:
        from mindspore.parallel.cluster import run as msrun
        from mindspore.parallel.cluster.process_entity import _api
    except ImportError as exc:
        print(f"error: {sys.executable} has no msrun ({exc}); it ships with MindSpore >= 2.3: install MindSpore "
              f"into the project's .venv or set PYTHON", file=sys.stderr)
        return 2
    _workers_use_this_python()

    sys.argv = ["msrun", *argv]
    args = msrun.get_args()
    manager = _api._ProcessManager(args)
    if several_nodes and args.node_rank > 0:
        manager.is_master = False  # node 0 hosts the scheduler
    elif several_nodes and args.node_rank == 0 and not manager.is_master:
        print(f"error: node 0 hosts the scheduler at --master_addr {args.master_addr}, which is not an address of "
              f"this machine (start node 0 on that machine)", file=sys.stderr)
        return 2

    failed = []  # (local rank, exit code) of the workers already dead when msrun stops the others
    stop_others = manager.kill_worker_processes

    def record_then_stop():
        failed.extend((rank, p.poll()) for rank, p in sorted(manager.proc_rank_map.items())
                      if p.poll() not in (None, 0))
        stop_others()

    manager.kill_worker_processes = record_then_stop

    def stop_everything():  # msrun's Ctrl-C handler; its own assumes a scheduler on every node
        manager.kill_worker_processes()
        manager.kill_tail_log_processes()
        if manager.msn_process is not None and manager.msn_process.poll() is None:
            manager.msn_process.kill()

    manager.kill_all_processes = stop_everything
    try:
        manager.run()
    except SystemExit:  # msrun ends with exit 0 after Ctrl-C has stopped the workers
        print("error: interrupted (Ctrl-C): the workers were stopped; the last resume point rank 0 saved is intact "
              "(continue with the same command and resume=auto)", file=sys.stderr)
        return 130
    except RuntimeError:
        for local_rank, code in failed or [(None, None)]:
            if local_rank is None:
                print(f"error: the distributed job failed (see the logs in {args.log_dir})", file=sys.stderr)
                continue
            rank, log_path = manager._get_node_id_and_log_path(local_rank)
            rank = local_rank if rank is None else rank
            print(f"error: rank {rank} exited with code {code}; the job was stopped. Last lines of {log_path}:",
                  file=sys.stderr)
            lines = _tail(log_path, TAIL_LINES)
            for line in lines:
                print(f"  | {line}", file=sys.stderr)
            if not lines:
                print("  (the log is empty: ranks other than 0 log only warnings and errors)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
