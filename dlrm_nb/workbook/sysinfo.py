"""What a run ran on: library versions, the project's git commit, CPU, memory and GPU."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions every run records.
TRACKED_PACKAGES = (
    "torch",
    "numpy",
    "pyarrow",
    "mlcommons-loadgen",
    "papermill",
    "scikit-learn",
    "dask",
    "matplotlib",
    "nbconvert",
    "dlrm-nb",
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def versions() -> dict[str, str | None]:
    """Python and the tracked packages' versions (None where a package is not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_commit(folder: str | os.PathLike = PROJECT_ROOT) -> dict[str, Any]:
    """The commit checked out in ``folder`` and whether tracked files differ from it."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The vector extensions that matter for inference speed (AVX2, AVX-512, AMX, bf16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    lines = [line for line in text.splitlines() if line.startswith("flags")]
    flags = lines[0].split(":", 1)[1].split() if lines else []
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "fma")
    return [flag for flag in wanted if flag in flags]


def memory_bytes() -> int | None:
    """Physical memory of the machine."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gpus() -> list[dict[str, Any]]:
    """CUDA devices torch sees: name, memory, compute capability (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    found = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        found.append(
            {
                "name": props.name,
                "memory_bytes": props.total_memory,
                "capability": f"{props.major}.{props.minor}",
            }
        )
    return found


def machine() -> dict[str, Any]:
    """The machine: host name, OS, CPU model and flags, logical cores, memory, GPUs."""
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "gpus": gpus(),
    }


def describe() -> dict[str, Any]:
    """Everything above, JSON-ready: ``versions``, ``git``, ``machine``, ``executable``."""
    return {"versions": versions(), "git": git_commit(), "machine": machine(), "executable": sys.executable}
