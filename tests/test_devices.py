"""Devices: one contract test over every registered device, registry errors, profiles."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from devices import (
    DeviceError,
    ProfileError,
    availability,
    device_class,
    load_profile,
    profile_names,
    registered,
)
from latency.workloads import source_tokens, workload_for
from mos_search.costs.profiling import ArchModels, translation_bundle
from mos_search.space import load_space

from conftest import TINY_SPACE

GPU_MARKS = {"cuda": [pytest.mark.gpu], "tensorrt": [pytest.mark.gpu, pytest.mark.tensorrt]}


def reference_tokens(model, profile) -> list[list[int]]:
    """Greedy tokens of the HAT workload computed with the plain PyTorch model."""
    src = torch.from_numpy(source_tokens(model.vocab_size, profile.source_len))
    with torch.no_grad():
        encoded = model.encode(src)
        encoded.states = [s.repeat_interleave(profile.beam, 0) for s in encoded.states]
        encoded.key_mask = encoded.key_mask.repeat_interleave(profile.beam, 0)
        state = model.start_decoder(encoded)
        tokens, out = torch.full((profile.beam, 1), 2), []
        for _ in range(profile.decoder_steps):
            logits, state = model.decode(tokens, state)
            tokens = logits[:, -1].argmax(-1, keepdim=True)
            out.append(tokens[:, 0].tolist())
    return out


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=GPU_MARKS.get(n, [])) for n in sorted(registered())],
)
def test_device_contract(name, tmp_path):
    cls = device_class(name)
    reason = cls.unavailable_reason()
    if reason:
        pytest.skip(f"{name}: {reason}")
    profile = load_profile(name).__class__(
        **{**load_profile(name).to_dict(), "decoder_steps": 6, "warmups": 1, "repeats": 3}
    )
    space = load_space(TINY_SPACE)
    model = ArchModels(space, vocab_size=50).model(space.sample(random.Random(4)))
    expected = reference_tokens(model, profile)
    with cls(profile) as device:
        with pytest.raises(DeviceError, match="no graph"):
            device.run("encoder", [])
        bundle = translation_bundle(model, device.needs, tmp_path)
        device.load(bundle)
        work = workload_for(device, bundle, profile)
        produced = work()
        assert [device.fetch(t)[:, 0].tolist() for t in produced] == expected
        seconds = device.time(work)
        assert 0 < seconds < 60


def test_cpu_devices_available_and_gpu_ones_say_why():
    status = availability()
    assert {"onnxruntime-cpu", "torch-cpu", "cuda", "tensorrt"} <= set(status)
    assert status["onnxruntime-cpu"] is None and status["torch-cpu"] is None
    if not torch.cuda.is_available():
        assert "CUDA" in status["cuda"]
    assert status["tensorrt"] is None or "TensorRT" in status["tensorrt"]


def test_unknown_device_lists_known_ones():
    with pytest.raises(
        DeviceError, match=r"unknown device 'tpu'; registered: cuda, onnxruntime-cpu"
    ):
        device_class("tpu")


def test_broken_plugin_is_a_warning(monkeypatch):
    from importlib.metadata import EntryPoint

    import devices.registry as registry

    real = registry.entry_points

    def with_broken(group):
        broken = EntryPoint("broken", "no_such_module:Thing", group)
        return [*real(group=group), broken]

    monkeypatch.setattr(registry, "entry_points", with_broken)
    with pytest.warns(UserWarning, match="device plug-in 'broken'"):
        found = registry.registered()
    assert "onnxruntime-cpu" in found and "broken" not in found


def test_shipped_profiles_load():
    assert {"onnxruntime-cpu", "torch-cpu", "cuda", "tensorrt"} <= set(profile_names())
    cpu = load_profile("onnxruntime-cpu")
    assert (cpu.threads, cpu.beam, cpu.source_len, cpu.decoder_steps) == (1, 5, 30, 30)
    assert load_profile("cuda").options["dtype"] == "float32"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("threads = 1", "missing setting 'backend'"),
        ('backend = "x"\nthreads = 0', "threads must be a positive integer"),
        ('backend = "x"\nstatistic = "mean"', "statistic must be one of median, trimmed_mean"),
        ('backend = "x"\ncolour = 1', r"unknown setting\(s\): colour"),
        ("backend = ", "not valid TOML"),
    ],
)
def test_bad_profiles(tmp_path, text, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_unknown_profile():
    with pytest.raises(ProfileError, match="unknown device profile 'nope'; shipped: cuda"):
        load_profile("nope")


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    from devices import ModelBundle

    bad = tmp_path / "encoder.onnx"
    bad.write_bytes(b"not a model")
    device = device_class("onnxruntime-cpu")(load_profile("onnxruntime-cpu"))
    with pytest.raises(DeviceError, match="ONNX Runtime cannot load"):
        device.load(ModelBundle(kind="translation", onnx={"encoder": bad}))
    with pytest.raises(DeviceError, match="needs the bundle's onnx graphs"):
        device.load(ModelBundle(kind="translation", torch={"encoder": object()}))


def test_source_tokens_are_fixed():
    a, b = source_tokens(100, 30, seed=0), source_tokens(100, 30, seed=0)
    assert np.array_equal(a, b) and a.min() >= 4 and a.shape == (1, 30)
