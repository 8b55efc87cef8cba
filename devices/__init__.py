"""Per-device backends that load a model bundle and time it with the right clock.

Optional packages (TensorRT, a CUDA build of torch) are imported only when a device is used, so
`import devices` works everywhere; `availability()` says which devices can run here and why not.

May import: nothing of `mos_search` or `latency`; numpy, and each backend's library lazily.
"""

from devices.base import Device, DeviceError, ModelBundle
from devices.profile import DeviceProfile, ProfileError, profile_names
from devices.registry import availability, device_class, load_profile, open_device, registered

__all__ = [
    "Device",
    "DeviceError",
    "DeviceProfile",
    "ModelBundle",
    "ProfileError",
    "availability",
    "device_class",
    "load_profile",
    "open_device",
    "profile_names",
    "registered",
]
