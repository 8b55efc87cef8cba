"""Peak memory of a deployed model on its device: every graph of a bundle loaded in one fresh
process, running the device profile's workload (translation: HAT's, the encoder once and
`decoder_steps` cached decoder steps at batch `beam`; BERT: one forward).

Measured like the BERT encoder's figure (`devices.memory`): the child process imports ONNX Runtime,
numpy and the workloads, notes its resident set (VmRSS), resets the high-water mark, loads the
bundle on the profile's device, runs the workload `runs` times and reports the growth of the
high-water mark (VmHWM): weights as loaded, ONNX Runtime's arenas, activations and the decoder's
cache, without the interpreter and libraries. Linux only; ONNX bundles on CPU devices only (a GPU's
memory is not in the resident set).

Run as a script: `python -m latency.memory SPEC.json` prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from devices import DeviceError, DeviceProfile, ModelBundle
from devices.memory import (
    check_linux,
    high_water_kib,
    reset_high_water_mark,
    resident_kib,
    run_child,
)
from devices.profile import profile_from_dict
from devices.registry import open_device

MEASURED_BACKENDS = ("onnxruntime-cpu",)  # resident-set growth is the device's memory there


def check_measurable(profile: DeviceProfile) -> None:
    """Raise DeviceError unless the profile's memory can be measured on this machine."""
    if profile.backend not in MEASURED_BACKENDS:
        raise DeviceError(
            f"peak memory is measured on {', '.join(MEASURED_BACKENDS)} on this machine; "
            f"{profile.name} runs on {profile.backend}"
        )
    check_linux()


def bundle_peak_memory(bundle: ModelBundle, profile: DeviceProfile, runs: int = 2) -> dict:
    """Peak memory of `bundle` (ONNX files) running `profile`'s workload, in a fresh process.

    Returns the child's record: `peak_inference_mib` (high-water growth, MiB), `baseline_mib`,
    `peak_mib`, the profile's name and threads, `runs`. Raises DeviceError if the device cannot be
    measured here or the child fails.
    """
    check_measurable(profile)
    missing = [str(p) for p in bundle.onnx.values() if not Path(p).is_file()]
    if not bundle.onnx or missing:
        raise DeviceError(f"peak memory needs the bundle's ONNX files; missing: {missing or 'all'}")
    spec = {
        "profile": profile.to_dict(),
        "bundle": {
            "kind": bundle.kind,
            "onnx": {name: str(path) for name, path in bundle.onnx.items()},
            "past_shapes": [list(s) for s in bundle.past_shapes],
            "vocab_size": bundle.vocab_size,
            "bos_id": bundle.bos_id,
        },
        "runs": runs,
    }
    with tempfile.TemporaryDirectory(prefix="mos-memory-") as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        return run_child([sys.executable, "-m", "latency.memory", str(path)], "the bundle")


def _measure_here(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy  # noqa: F401 - imported before the baseline, like the session's library
    import onnxruntime

    from latency.workloads import workload_for

    settings = dict(spec["profile"])
    profile = profile_from_dict(settings, settings.pop("name"), "memory spec")
    b = spec["bundle"]
    bundle = ModelBundle(
        kind=b["kind"],
        onnx={name: Path(p) for name, p in b["onnx"].items()},
        past_shapes=[tuple(s) for s in b["past_shapes"]],
        vocab_size=b["vocab_size"],
        bos_id=b["bos_id"],
    )
    device = open_device(profile)
    before = resident_kib()
    reset_high_water_mark()
    device.load(bundle)
    work = workload_for(device, bundle, profile)
    for _ in range(spec["runs"]):
        work()
    peak = high_water_kib()
    device.close()
    return {
        "profile": profile.name,
        "threads": profile.threads,
        "runs": spec["runs"],
        "baseline_mib": before / 1024,
        "peak_mib": peak / 1024,
        "peak_inference_mib": (peak - before) / 1024,
        "onnxruntime": onnxruntime.__version__,
    }


def main() -> None:
    """Command-line entry of the child process."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="JSON written by bundle_peak_memory")
    args = parser.parse_args()
    print(json.dumps(_measure_here(json.loads(Path(args.spec).read_text()))))


if __name__ == "__main__":
    main()
