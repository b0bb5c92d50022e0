"""Provenance of a measurement: the source commit, library versions and the machine.

Run files, benchmark results and ``biasvar reproduce``'s ``provenance.json`` record these so that
every committed number names what produced it.
"""

from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

import biasvar


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """``git rev-parse HEAD`` of the source tree (``+dirty`` if tracked files changed), or "unknown".

    Read once per process (at its first call) and kept: the code a process runs is the code it loaded,
    so a long sweep records the same commit in every run file even when the tree moves on meanwhile."""
    root = Path(biasvar.__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (Linux: /proc/cpuinfo)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and machine of this process (run-file and bench provenance)."""
    return {
        "biasvar_version": biasvar.__version__,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "none",
        "device": str(device),
        "device_name": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "hostname": platform.node(),
        "git_commit": git_commit(),
    }


__all__ = ["device_name", "environment", "git_commit"]
