"""Device registry: backends found by name through the `mos_search.devices` entry-point group."""

from __future__ import annotations

import warnings
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from devices.base import Device, DeviceError
from devices.profile import DeviceProfile, ProfileError, parse_profile

GROUP = "mos_search.devices"
# The devices this repository ships, found even where no distribution declares the entry points
# (the measuring agent run from copied source, `latency.remote`); installed entry points win.
BUILTIN = {
    "onnxruntime-cpu": "devices.onnxruntime_cpu:OnnxRuntimeCPU",
    "torch-cpu": "devices.torch_cpu:TorchCPU",
    "cuda": "devices.cuda:CudaDevice",
    "tensorrt": "devices.tensorrt:TensorRTDevice",
}


def registered() -> dict[str, type[Device]]:
    """Every installed device class by name; a plug-in that fails to load is a warning."""
    found: dict[str, type[Device]] = {}
    entries = {entry.name: entry for entry in entry_points(group=GROUP)}
    for name, value in BUILTIN.items():
        entries.setdefault(name, EntryPoint(name, value, GROUP))
    for entry in entries.values():
        try:
            cls = entry.load()
        except Exception as exc:  # a broken plug-in must not take the others down
            warnings.warn(
                f"device plug-in {entry.name!r} ({entry.value}) failed to load: {exc}", stacklevel=2
            )
            continue
        if not (isinstance(cls, type) and issubclass(cls, Device)):
            warnings.warn(f"device plug-in {entry.name!r} is not a Device subclass", stacklevel=2)
            continue
        found[entry.name] = cls
    return found


def device_class(name: str) -> type[Device]:
    """The device class registered as `name`; unknown names list the known ones."""
    devices = registered()
    if name not in devices:
        raise DeviceError(f"unknown device {name!r}; registered: {', '.join(sorted(devices))}")
    return devices[name]


def availability() -> dict[str, str | None]:
    """Each registered device -> None when it can run here, else the reason it cannot."""
    return {name: cls.unavailable_reason() for name, cls in sorted(registered().items())}


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A profile by shipped name (e.g. "onnxruntime-cpu") or from a TOML file, checked whole:
    its backend must be registered and read every key of its `[options]` (a `dtype` on a CPU
    backend is an error, not a float32 run). Problems are a ProfileError naming the file."""
    profile, where = parse_profile(name_or_path)
    devices = registered()
    if profile.backend not in devices:
        raise ProfileError(
            f"{where}: backend {profile.backend!r} is not a registered device; registered: "
            f"{', '.join(sorted(devices))}"
        )
    devices[profile.backend].check_options(profile.options, where)
    return profile


def open_device(profile: DeviceProfile | str) -> Device:
    """An instance for a profile (or profile name), after checking it can run here."""
    if isinstance(profile, str):
        profile = load_profile(profile)
    cls = device_class(profile.backend)
    cls.check_available()
    return cls(profile)
