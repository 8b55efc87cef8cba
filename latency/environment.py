"""Where a measurement was taken: the machine, its CPU and governor, the OS and the libraries.

Read from `/proc` and `/sys` where Linux has them; a value that cannot be read is left out (or
None), never guessed. Needs neither torch nor `mos_search`.
"""

from __future__ import annotations

import contextlib
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "onnxruntime", "onnx", "numpy", "tensorrt")
GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
MAX_FREQ_KHZ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
BOARD = Path("/sys/firmware/devicetree/base/model")  # ARM boards: e.g. "Raspberry Pi 4 Model B"


def _read(path: Path) -> str | None:
    """A small text file's stripped content (NUL bytes dropped), or None when unreadable."""
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip() or None
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU's model name (`model name` in /proc/cpuinfo; on ARM boards, the board's model),
    else what `platform` says."""
    cpuinfo = _read(Path("/proc/cpuinfo")) or ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model") and value.strip():
            return value.strip()
    return _read(BOARD) or platform.processor() or platform.machine()


def onnxruntime_providers() -> list[str] | None:
    """ONNX Runtime's available execution providers, or None when it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return list(onnxruntime.get_available_providers())


def environment() -> dict[str, Any]:
    """CPU model, cores (usable by this process and in the machine), machine, OS, frequency
    governor and maximum frequency where readable, Python, library versions, ONNX Runtime's
    providers."""
    versions = {}
    for package in PACKAGES:
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    max_khz = _read(MAX_FREQ_KHZ)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "machine": platform.machine(),
        "os": platform.platform(),
        "governor": _read(GOVERNOR),
        "cpu_max_mhz": int(max_khz) // 1000 if max_khz and max_khz.isdigit() else None,
        "python": platform.python_version(),
        "versions": versions,
        "onnxruntime_providers": onnxruntime_providers(),
    }
