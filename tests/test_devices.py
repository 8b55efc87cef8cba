"""Devices: one contract test over every registered device, the CUDA device in every dtype with
and without CUDA graphs against the CPU float32 reference, registry errors, profiles."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from devices import (
    Device,
    DeviceError,
    ProfileError,
    availability,
    device_class,
    load_profile,
    profile_names,
    registered,
)
from devices.cuda import DTYPES
from latency.workloads import source_tokens, workload_for
from mos_search.costs.profiling import ArchModels, translation_bundle
from mos_search.space import load_space

from conftest import TINY_SPACE

GPU_MARKS = {"cuda": [pytest.mark.gpu], "tensorrt": [pytest.mark.gpu, pytest.mark.tensorrt]}


# How far a device's decoder logits may be from the CPU float32 reference, as a fraction of the
# largest reference logit. float16/bfloat16: 8 unit roundoffs u of the dtype (u = 2^-11, 2^-8);
# the same casts on the CPU stay within 2.5u (test_the_cuda_dtype_path_on_the_cpu). float32
# rounds like the CPU and only sums in another order (ONNX Runtime vs PyTorch on the CPU: 1e-6):
# 1e-4 leaves room for GPU kernels, yet a run that silently drops to float16 (5e-4 and more) fails.
LOGIT_TOLERANCE = {"float32": 1e-4, "float16": 8 * 2.0**-11, "bfloat16": 8 * 2.0**-8}


@dataclass
class Decoded:
    """A decoder run: each step's greedy tokens (one per beam row) and the logits they came from
    (float32 on the host, (steps, beam, vocab)); `dtype` is the logits' dtype on the device."""

    tokens: list[list[int]]
    logits: np.ndarray
    dtype: str


def short_profile(name: str, **options: Any) -> Any:
    """The shipped profile `name` at 6 decoder steps and few repeats, `options` changed."""
    base = load_profile(name)
    changes = {"decoder_steps": 6, "warmups": 1, "repeats": 3}
    return base.__class__(**{**base.to_dict(), **changes, "options": {**base.options, **options}})


def contract_model():
    """A fresh model of the tiny space (a device may cast or move the model it is given)."""
    space = load_space(TINY_SPACE)
    return ArchModels(space, vocab_size=50).model(space.sample(random.Random(4)))


def reference_decode(model, profile) -> Decoded:
    """The HAT workload computed with the plain PyTorch model on the CPU in float32."""
    src = torch.from_numpy(source_tokens(model.vocab_size, profile.source_len))
    with torch.no_grad():
        encoded = model.encode(src)
        encoded.states = [s.repeat_interleave(profile.beam, 0) for s in encoded.states]
        encoded.key_mask = encoded.key_mask.repeat_interleave(profile.beam, 0)
        state = model.start_decoder(encoded)
        tokens, out, logits = torch.full((profile.beam, 1), 2), [], []
        for _ in range(profile.decoder_steps):
            step_logits, state = model.decode(tokens, state)
            logits.append(step_logits[:, -1].float().numpy())  # (beam, V)
            tokens = step_logits[:, -1].argmax(-1, keepdim=True)
            out.append(tokens[:, 0].tolist())
    return Decoded(out, np.stack(logits), "float32")


def dtype_name(array: Any) -> str:
    """`float16` for a torch.float16 tensor or a numpy float16 array."""
    return str(array.dtype).removeprefix("torch.")


class StepRecorder:
    """Keeps each decoder step's logits and tokens, as device arrays, by wrapping the device's
    `argmax` (the workload calls it once a step); a CUDA graph replay refills the same arrays."""

    def __init__(self, device: Device) -> None:
        self.steps: list[tuple[Any, Any]] = []
        self._argmax = device.argmax
        device.argmax = self._record

    def _record(self, logits: Any) -> Any:
        tokens = self._argmax(logits)
        self.steps.append((logits, tokens))
        return tokens

    def decoded(self, device: Device, steps: list[tuple[Any, Any]]) -> Decoded:
        """`steps` fetched to the host."""
        return Decoded(
            [device.fetch(tokens)[:, 0].tolist() for _, tokens in steps],
            np.stack([device.fetch(logits) for logits, _ in steps]),
            dtype_name(steps[0][0]),
        )


def decode_on(device: Device, bundle, profile, graphs: bool = False) -> Decoded:
    """Run the workload on `device` once and return what it decoded. `graphs`: through
    `device.time`, which captures the workload as a CUDA graph, then a replay of that graph
    into outputs zeroed beforehand, so only the replay can have filled them."""
    recorder = StepRecorder(device)
    work, n = workload_for(device, bundle, profile), profile.decoder_steps
    if not graphs:
        work()
        assert len(recorder.steps) == n
        return recorder.decoded(device, recorder.steps)
    device.time(work)  # a warm-up run, the capture (recorded), one replay
    assert len(recorder.steps) == 2 * n, "no CUDA graph was captured"
    captured = recorder.steps[n:]
    with torch.inference_mode():  # the graph's outputs are inference tensors
        for logits, tokens in captured:
            logits.zero_()
            tokens.zero_()
    device.time(work)  # the cached graph, replayed: no Python runs, nothing is recorded
    assert len(recorder.steps) == 2 * n, "the workload ran again instead of the graph"
    return recorder.decoded(device, captured)


def assert_matches_reference(decoded: Decoded, reference: Decoded, dtype: str) -> None:
    """A device run in `dtype` against the CPU float32 reference: logits within
    LOGIT_TOLERANCE[dtype] of the largest reference logit, hence, where every step's top-2
    margin exceeds twice that (checked first), the same greedy tokens."""
    assert decoded.dtype == dtype, f"the device computed in {decoded.dtype}, not {dtype}"
    bound = LOGIT_TOLERANCE[dtype] * float(np.abs(reference.logits).max())
    top2 = np.sort(reference.logits, axis=-1)[..., -2:]
    margin = float((top2[..., 1] - top2[..., 0]).min())
    assert margin > 2 * bound, f"top-2 margin {margin:.3g}: too close for {dtype}, pick an arch"
    assert decoded.logits.shape == reference.logits.shape
    error = float(np.abs(decoded.logits - reference.logits).max())
    assert error <= bound, f"{dtype} logits are {error:.3g} from the reference, > {bound:.3g}"
    assert decoded.tokens == reference.tokens


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=GPU_MARKS.get(n, [])) for n in sorted(registered())],
)
def test_device_contract(name, tmp_path):
    cls = device_class(name)
    reason = cls.unavailable_reason()
    if reason:
        pytest.skip(f"{name}: {reason}")
    profile = short_profile(name)
    model = contract_model()
    expected = reference_decode(model, profile).tokens
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


@pytest.mark.parametrize("name", ["onnxruntime-cpu", "torch-cpu"])
def test_cpu_logits_match_the_float32_reference(name, tmp_path):
    """The recorder and the comparison the CUDA tests use, on the CPU devices."""
    profile, model = short_profile(name), contract_model()
    reference = reference_decode(model, profile)
    with device_class(name)(profile) as device:
        bundle = translation_bundle(model, device.needs, tmp_path)
        device.load(bundle)
        decoded = decode_on(device, bundle, profile)
    assert_matches_reference(decoded, reference, "float32")
    assert np.abs(decoded.logits - reference.logits).max() < 1e-5


def test_every_cuda_dtype_has_a_tolerance():
    assert set(LOGIT_TOLERANCE) == set(DTYPES)


@pytest.fixture
def cuda_on_the_cpu(monkeypatch):
    """Make a CudaDevice whose CUDA calls are stubbed and whose tensors live on the CPU: its
    option handling and dtype casts run here, only the GPU kernels and CUDA graphs do not."""
    from devices.cuda import CudaDevice

    monkeypatch.setattr(CudaDevice, "unavailable_reason", classmethod(lambda cls: None))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)

    def make(profile):
        device = CudaDevice(profile)
        device.torch_device = torch.device("cpu")
        return device

    return make


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_cuda_dtype_path_on_the_cpu(cuda_on_the_cpu, dtype):
    """The CPU half of test_cuda_matches_the_cpu_float32_reference: the same model, profile
    and comparison; CudaDevice casts the graphs and inputs to `dtype`, here on CPU kernels."""
    profile, model = short_profile("cuda", dtype=dtype), contract_model()
    reference = reference_decode(model, profile)
    with cuda_on_the_cpu(profile) as device:
        bundle = translation_bundle(model, device.needs, None)
        device.load(bundle)
        decoded = decode_on(device, bundle, profile)
    assert_matches_reference(decoded, reference, dtype)
    error = np.abs(decoded.logits - reference.logits).max() / np.abs(reference.logits).max()
    if dtype != "float32":  # the float32 tolerance tells a rounded run from a float32 one
        assert error > LOGIT_TOLERANCE["float32"]


@pytest.mark.gpu
@pytest.mark.parametrize("graphs", [False, True], ids=["eager", "cuda-graphs"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_the_cpu_float32_reference(dtype, graphs):
    """Every dtype, with and without CUDA graphs: greedy tokens as on the CPU in float32 and
    logits within the dtype's tolerance (the CPU half: test_the_cuda_dtype_path_on_the_cpu)."""
    cls = device_class("cuda")
    reason = cls.unavailable_reason()
    if reason:
        pytest.skip(f"cuda: {reason}")
    profile, model = short_profile("cuda", dtype=dtype, cuda_graphs=graphs), contract_model()
    reference = reference_decode(model, profile)
    with cls(profile) as device:
        bundle = translation_bundle(model, device.needs, None)
        device.load(bundle)
        decoded = decode_on(device, bundle, profile, graphs=graphs)
    assert_matches_reference(decoded, reference, dtype)


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
