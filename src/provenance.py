"""Where a result came from: the command, the commit, the machine's cores and its load average.

Every results file the tools write (the study, the sweep, the demo, the benchmarks) carries these fields,
so a figure quoted in the docs can be traced to the run that made it and the load it ran under.
"""
import os
import subprocess
import time


def git_commit(root):
    """``(commit, dirty)`` of the repository at ``root``; ``(None, None)`` outside a git checkout.

    ``dirty`` is True when tracked files differ from the commit (untracked files do not count).
    """
    def git(*args):
        return subprocess.run(["git", "-C", root, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, timeout=30, check=True).stdout.strip()
    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None


def load_average():
    """The 1, 5 and 15 minute load averages (None where the system has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def provenance(command, root):
    """``{"command", "commit", "dirty", "cpu_count", "load_average", "started"}`` for a run starting now."""
    commit, dirty = git_commit(root)
    return {"command": command, "commit": commit, "dirty": dirty, "cpu_count": os.cpu_count(),
            "load_average": load_average(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}


def finish(facts):
    """``facts`` with the load average at the end and the finishing time added (a new dict)."""
    return {**facts, "load_average_end": load_average(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
