"""One copy of the weights a bundle's graphs hold several times: the token table.

A translation model's exported graphs hold its token table three times: the decoder step looks
it up (V x E_dec) and multiplies by a transposed copy (E_dec x V, the tied output projection),
and the encoder looks up its own columns (V x E_enc, the leading columns when the embeddings are
shared, the very table when the widths are equal). `share_weights` keeps each such table once, in
`shared.bin` as ONNX external data (offsets aligned to 4 KiB), and gives every graph what it held
as a constant expression of it: the same tensor, `Slice` of its leading columns, `Transpose`, or
`Transpose` of a `Slice`. ONNX Runtime folds those at session creation, so the graphs compute
exactly what they did (bit for bit, `tests/test_agent.py`) from fewer bytes on the wire.

Host side only (needs the `onnx` package); a target reads the files with ONNX Runtime alone.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SHARED = "shared.bin"  # the file name the graphs' external data references
MIN_SHARED_BYTES = 64 * 1024  # smaller tensors stay inside their graph
ALIGN = 4096


@dataclass
class Held:
    """A large initializer of one graph and how it is derived from a stored one (if it is)."""

    graph: str
    tensor: Any  # onnx.TensorProto
    array: np.ndarray
    source: int | None = None  # index of the stored Held it comes from
    columns: int | None = None  # leading columns of the source (None: all)
    transposed: bool = False


def _derive(held: Held, source: Held) -> tuple[int | None, bool] | None:
    """(columns, transposed) making `held` from `source`, or None."""
    a, s = held.array, source.array
    if a.dtype != s.dtype or a.ndim != s.ndim:
        return None
    if a.shape == s.shape and np.array_equal(a, s):
        return None, False
    if a.ndim != 2:
        return None
    for candidate, transposed in ((a, False), (a.T, True)):
        rows, cols = candidate.shape
        fits = rows == s.shape[0] and cols <= s.shape[1]
        if fits and np.array_equal(candidate, s[:, :cols]):
            return (None if cols == s.shape[1] else cols), transposed
    return None


def _plan(models: dict[str, Any]) -> list[Held]:
    """Every large initializer, the largest first, each derived from an earlier one if it can be."""
    from onnx import numpy_helper

    held = [
        Held(name, tensor, numpy_helper.to_array(tensor))
        for name, model in models.items()
        for tensor in model.graph.initializer
        if len(tensor.raw_data) >= MIN_SHARED_BYTES
    ]
    held.sort(key=lambda h: -h.array.size)
    for i, h in enumerate(held):
        for j in range(i):
            if held[j].source is None and (how := _derive(h, held[j])) is not None:
                h.source, (h.columns, h.transposed) = j, how
                break
    return held


def share_weights(graphs: dict[str, Path], out: Path) -> Path | None:
    """Write each graph to `out/NAME.onnx`, the weights it shares with a graph (or holds twice)
    stored once in `out/shared.bin`; that file, or None when nothing repeats (the graphs are then
    copied unchanged). The graphs must keep their weights inside (no external data yet)."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.external_data_helper import set_external_data

    models = {name: onnx.load(str(path)) for name, path in graphs.items()}
    held = _plan(models)
    stored = sorted({h.source for h in held if h.source is not None})
    if not stored:
        for name, path in graphs.items():
            shutil.copyfile(path, out / f"{name}.onnx")
        return None
    where: dict[int, tuple[int, int]] = {}  # stored index -> (offset, length)
    with open(out / SHARED, "wb") as data:
        for index in stored:
            data.write(b"\0" * (-data.tell() % ALIGN))
            raw = held[index].tensor.raw_data
            where[index] = (data.tell(), len(raw))
            data.write(raw)

    def external(tensor: Any, index: int) -> None:
        set_external_data(tensor, SHARED, *where[index])  # also marks it external
        tensor.ClearField("raw_data")

    for index in stored:
        external(held[index].tensor, index)
    for h in held:
        if h.source is None:
            continue
        graph = models[h.graph].graph
        name = h.tensor.name
        if h.columns is None and not h.transposed:  # the same bytes: a reference
            external(h.tensor, h.source)
            continue
        graph.initializer.remove(h.tensor)
        source = held[h.source]
        base = f"shared::{h.source}"
        if source.graph == h.graph:
            base = source.tensor.name
        elif not any(t.name == base for t in graph.initializer):
            copy = onnx.TensorProto()
            copy.CopyFrom(source.tensor)
            copy.name = base
            graph.initializer.append(copy)
        nodes, value = [], base
        if h.columns is not None:
            bounds = {"starts": 0, "ends": h.columns, "axes": 1}
            for key, number in bounds.items():
                graph.initializer.append(
                    numpy_helper.from_array(np.array([number], np.int64), f"{name}::{key}")
                )
            sliced = name if not h.transposed else f"{name}::columns"
            nodes.append(
                helper.make_node("Slice", [value, *(f"{name}::{k}" for k in bounds)], [sliced])
            )
            value = sliced
        if h.transposed:
            nodes.append(helper.make_node("Transpose", [value], [name], perm=[1, 0]))
        for position, node in enumerate(nodes):
            graph.node.insert(position, node)
    for name, model in models.items():
        onnx.save_model(model, str(out / f"{name}.onnx"))
    return out / SHARED
