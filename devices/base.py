"""The device interface: load a model bundle, run its graphs, and time work with the right clock.

A device is an array backend plus a graph runner plus a clock. Workloads (in `latency`) are
written once against these primitives, so each backend only says how to move arrays, run a
graph, pick the argmax and measure time (wall clock on CPUs, CUDA events on GPUs).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from devices.profile import DeviceProfile, ProfileError
from devices.text import did_you_mean

Array = Any  # a backend's own array type (numpy, torch tensor on a device, ...)


class DeviceError(Exception):
    """A device cannot run here, or was asked something it cannot do; the message says why."""


@dataclass(frozen=True)
class Option:
    """One key of a profile's `[options]` that a backend reads: its type (of each item, for a
    list) and, where they are fixed, its allowed values."""

    kind: type
    choices: tuple[Any, ...] = ()
    item: type | None = None

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` for this option, or None."""
        if self.choices and value not in self.choices:
            return f"expected one of {', '.join(map(str, self.choices))}, found {value!r}"
        if isinstance(value, bool) != (self.kind is bool) or not isinstance(value, self.kind):
            return f"expected a {self.kind.__name__}, found {value!r}"
        if self.item is not None and not all(isinstance(v, self.item) for v in value):
            return f"expected a list of {self.item.__name__}, found {value!r}"
        return None


@dataclass
class ModelBundle:
    """What a device runs: ONNX files and/or PyTorch modules under the same graph names.

    Translation bundles have graphs "encoder" and "decoder_step" (contract in
    `mos_search.models.onnx`) and list each decoder layer's (heads, head size) in `past_shapes`;
    BERT bundles have one graph "encoder".
    """

    kind: str
    onnx: dict[str, Path] = field(default_factory=dict)
    torch: dict[str, Any] = field(default_factory=dict)
    past_shapes: list[tuple[int, int]] = field(default_factory=list)
    vocab_size: int = 0
    bos_id: int = 2


class Device(ABC):
    """A backend that runs bundles; registered by name in the `mos_search.devices` group."""

    name: ClassVar[str] = ""
    needs: ClassVar[str] = "onnx"  # which half of a bundle it runs: "onnx" or "torch"
    # the profile `[options]` this backend reads; any other key is an error, never ignored
    OPTIONS: ClassVar[dict[str, Option]] = {}

    def __init__(self, profile: DeviceProfile) -> None:
        self.check_options(profile.options, f"profile {profile.name!r}")
        self.profile = profile
        self._graphs: dict[str, Any] = {}

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        """Raise ProfileError for an `[options]` key this backend does not read, or a value it
        does not take; the message names the key, `where` (the profile file) and the backend."""
        known = list(cls.OPTIONS)
        for key, value in options.items():
            if key not in cls.OPTIONS:
                reads = f"it reads: {', '.join(known)}" if known else "it reads no options"
                raise ProfileError(
                    f"{where}: [options] {key} is not read by backend {cls.name!r} ({reads})"
                    f"{did_you_mean([key], known)}"
                )
            problem = cls.OPTIONS[key].problem(value)
            if problem:
                raise ProfileError(f"{where}: [options] {key} of backend {cls.name!r}: {problem}")

    # ------------------------------------------------------------------ availability
    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when this device can run here, else one line saying why not."""
        return None

    @classmethod
    def check_available(cls) -> None:
        """Raise DeviceError with the reason when the device cannot run here."""
        reason = cls.unavailable_reason()
        if reason:
            raise DeviceError(f"device {cls.name!r} is not available: {reason}")

    # ------------------------------------------------------------------ lifetime
    def load(self, bundle: ModelBundle) -> None:
        """Prepare every graph of `bundle` (sessions, engines or modules)."""
        source = bundle.onnx if self.needs == "onnx" else bundle.torch
        if not source:
            raise DeviceError(f"device {self.name!r} needs the bundle's {self.needs} graphs")
        self.close()
        self._graphs = {name: self._load_graph(name, graph) for name, graph in source.items()}

    def close(self) -> None:
        """Release sessions, engines and memory."""
        self._graphs = {}

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ running
    def run(self, graph: str, inputs: list[Array]) -> list[Array]:
        """Run graph `graph` of the loaded bundle on device arrays; outputs stay on the device."""
        if graph not in self._graphs:
            raise DeviceError(f"no graph {graph!r} loaded; loaded: {sorted(self._graphs)}")
        return self._run(self._graphs[graph], inputs)

    def time(self, work: Callable[[], None]) -> float:
        """Seconds `work` takes, measured so that queued device work is included."""
        self.synchronize()
        start = time.perf_counter()
        work()
        self.synchronize()
        return time.perf_counter() - start

    def synchronize(self) -> None:  # noqa: B027 - synchronous backends have nothing to wait for
        """Wait for queued work (no-op on synchronous backends)."""

    def peak_memory_bytes(self) -> int | None:
        """Peak memory the device saw since loading, where it can tell."""
        return None

    # ------------------------------------------------------------------ arrays
    @abstractmethod
    def put(self, array: np.ndarray) -> Array:
        """A host array on the device."""

    @abstractmethod
    def fetch(self, array: Array) -> np.ndarray:
        """A device array on the host."""

    @abstractmethod
    def zeros(self, shape: tuple[int, ...]) -> Array:
        """float32 zeros on the device."""

    @abstractmethod
    def argmax(self, logits: Array) -> Array:
        """(B, V) logits -> (B, 1) int64 token ids, on the device."""

    @abstractmethod
    def repeat_batch(self, array: Array, times: int) -> Array:
        """Repeat every row `times` times along the batch axis."""

    @abstractmethod
    def _load_graph(self, name: str, graph: Any) -> Any: ...

    @abstractmethod
    def _run(self, loaded: Any, inputs: list[Array]) -> list[Array]: ...
