"""Ascend rank tables (``RANK_TABLE_FILE``, version 1.0): which ranks and devices each server starts.

A table lists every server of the job and, per server, its devices with their global rank::

    {"version": "1.0", "server_count": "2", "status": "completed",
     "server_list": [{"server_id": "10.0.0.1",
                      "device": [{"device_id": "0", "device_ip": "192.168.100.101", "rank_id": "0"}, ...]},
                     {"server_id": "10.0.0.2",
                      "device": [{"device_id": "0", "device_ip": "192.168.100.109", "rank_id": "8"}, ...]}]}

Each local process gets ``RANK_ID`` = the device's ``rank_id`` and ``DEVICE_ID`` = its ``device_id``;
``RANK_SIZE`` is the number of devices in the whole table. Errors are ``ValueError`` with one line
naming the file and what was expected.
"""
import ipaddress
import json
import os
import socket
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Worker:
    """One process of this server: its global rank and the local device it drives."""

    rank_id: int
    device_id: int


@dataclass(frozen=True)
class ServerPlan:
    """What one server of the table starts: ``workers`` in rank order, out of ``rank_size`` in all."""

    server_index: int
    server_id: str
    rank_size: int
    workers: tuple


def _int_field(path, where, entry, name):
    value = entry.get(name) if isinstance(entry, dict) else None
    text = str(value).strip() if value is not None else ""
    if not text.isdigit():
        raise ValueError(f"{path}: {where} needs '{name}' as a non-negative integer, got {value!r}")
    return int(text)


def read_rank_table(path):
    """The servers of a rank table as ``[(server_id, [Worker, ...]), ...]``, checked for consistency:
    every rank appears once and the ranks are 0..N-1, every device once per server."""
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a JSON rank table ({str(err).splitlines()[0]})") from None
    servers = table.get("server_list") if isinstance(table, dict) else None
    if not isinstance(servers, list) or not servers:
        raise ValueError(f"{path}: expected a rank table with a non-empty 'server_list' (version 1.0 format)")
    if table.get("status", "completed") != "completed":
        raise ValueError(f"{path}: status is {table.get('status')!r}, not 'completed' (the table is still being made)")
    parsed, ranks = [], {}
    for i, server in enumerate(servers):
        server_id = str(server.get("server_id", "")).strip() if isinstance(server, dict) else ""
        if not server_id:
            raise ValueError(f"{path}: server_list[{i}] has no 'server_id'")
        devices = server.get("device")
        if not isinstance(devices, list) or not devices:
            raise ValueError(f"{path}: server {server_id} has no 'device' list")
        workers, device_ids = [], set()
        for j, device in enumerate(devices):
            where = f"server {server_id} device[{j}]"
            worker = Worker(_int_field(path, where, device, "rank_id"), _int_field(path, where, device, "device_id"))
            if worker.device_id in device_ids:
                raise ValueError(f"{path}: server {server_id} lists device_id {worker.device_id} twice")
            if worker.rank_id in ranks:
                raise ValueError(f"{path}: rank_id {worker.rank_id} appears twice (servers {ranks[worker.rank_id]} "
                                 f"and {server_id})")
            device_ids.add(worker.device_id)
            ranks[worker.rank_id] = server_id
            workers.append(worker)
        parsed.append((server_id, sorted(workers, key=lambda w: w.rank_id)))
    if sorted(ranks) != list(range(len(ranks))):
        missing = sorted(set(range(len(ranks))) - set(ranks))
        raise ValueError(f"{path}: rank_ids must be 0..{len(ranks) - 1}, rank {missing[0]} is missing")
    ids = [server_id for server_id, _ in parsed]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: a server_id appears twice in server_list")
    return parsed


def local_addresses():
    """This machine's names and IP addresses (from ``ip -j addr`` where there is one, and the host name)."""
    found = {socket.gethostname(), socket.getfqdn()}
    try:
        found.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    try:
        out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, timeout=5).stdout
        for link in json.loads(out or "[]"):
            found.update(a.get("local", "") for a in link.get("addr_info", []))
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    return {a for a in found if a}


def _same_address(a, b):
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def server_plan(path, devices_per_node, server_index=None, addresses=None):
    """The ``ServerPlan`` of this server: ``server_index`` (0-based position in server_list) when given,
    else the server whose ``server_id`` is one of ``addresses`` (default: this machine's). The table's
    device count for it must equal ``devices_per_node``."""
    servers = read_rank_table(path)
    if server_index is None:
        mine = addresses if addresses is not None else local_addresses()
        hits = [i for i, (server_id, _) in enumerate(servers) if any(_same_address(server_id, a) for a in mine)]
        if len(hits) != 1:
            ids = ", ".join(server_id for server_id, _ in servers)
            found = "none" if not hits else "several"
            raise ValueError(f"{path}: {found} of the servers ({ids}) is this machine "
                             f"({', '.join(sorted(mine)) or 'no address found'}); name it with --server_index I")
        server_index = hits[0]
    if not 0 <= server_index < len(servers):
        raise ValueError(f"{path}: --server_index {server_index} is outside the table's {len(servers)} server(s) "
                         f"(0..{len(servers) - 1})")
    server_id, workers = servers[server_index]
    if len(workers) != devices_per_node:
        raise ValueError(f"{path}: server {server_id} has {len(workers)} device(s) in the table, "
                         f"but DEVICES_PER_NODE is {devices_per_node}")
    rank_size = sum(len(w) for _, w in servers)
    return ServerPlan(server_index, server_id, rank_size, tuple(workers))


def plan_lines(plan, log_dir):
    """The plan as shell-readable lines: ``RANK_SIZE N`` then ``RANK_ID DEVICE_ID LOG_PATH`` per worker."""
    lines = [f"RANK_SIZE {plan.rank_size} SERVER {plan.server_index} {plan.server_id}"]
    for w in plan.workers:
        lines.append(f"WORKER {w.rank_id} {w.device_id} {os.path.join(log_dir, f'worker_{w.rank_id}.log')}")
    return lines
