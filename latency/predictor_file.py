"""Reading a saved predictor's two files, each checked before anything uses it.

`NAME.json`, the header: UTF-8 JSON of format `FORMAT` holding `feature_names` (strings),
`members` and `layers` (positive integers), `arrays` (the file name of the arrays, beside the
header), `arrays_sha256` and `meta` (an object). `NAME.npz`, the arrays (no pickle), whose sha256
the header names, with F features and Q = 1 + F + F(F+1)/2 quadratic terms:

    mean, scale, correction  (F,)      output_map  (2,)      residuals  (R,)
    m{k}.quadratic  (Q,)     m{k}.w{i}  (H_i, H_i+1), H_0 = F and the last width 1
    m{k}.b{i}  (H_i+1,)      for every member k < members and layer i < layers

A file that breaks any of this raises PredictorError naming the file and what was expected.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from devices.text import NotUtf8, decode_utf8

FORMAT = "mos-search-latency-ensemble/2"
RETRAIN = "retrain it with `mos-search predictor train`"
# header key -> (type, what it must be)
HEADER_FIELDS: dict[str, tuple[type, str]] = {
    "feature_names": (list, "a list of feature names"),
    "members": (int, "a positive integer"),
    "layers": (int, "a positive integer"),
    "arrays": (str, "the file name of the arrays"),
    "arrays_sha256": (str, "a hex sha256"),
    "meta": (dict, "an object"),
}


class PredictorError(ValueError):
    """A predictor file is missing, malformed, or does not fit the features it is given."""


def _header_problem(header: dict[str, Any]) -> str | None:
    """What is wrong with a header of the right format, or None when nothing is."""
    for key, (kind, expected) in HEADER_FIELDS.items():
        value = header.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"'{key}' must be {expected}, found {value!r:.60}"
    names = header["feature_names"]
    if not all(isinstance(name, str) for name in names):
        return f"'feature_names' must be a list of feature names, found {names!r:.60}"
    for key in ("members", "layers"):
        if header[key] < 1:
            return f"'{key}' must be a positive integer, found {header[key]}"
    if Path(header["arrays"]).name != header["arrays"] or header["arrays"] in ("", ".", ".."):
        return f"'arrays' must be a file name beside the header, found {header['arrays']!r}"
    return None


def read_header(path: Path) -> dict[str, Any]:
    """The checked header of the predictor `path` (see the module docstring)."""
    if not path.is_file():
        raise PredictorError(f"predictor file not found: {path}")
    try:
        header = json.loads(decode_utf8(path.read_bytes()))
    except NotUtf8 as exc:
        raise PredictorError(f"{path}:{exc.line}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise PredictorError(
            f"{path}:{exc.lineno}: not a JSON predictor header ({exc.msg}: column "
            f"{exc.colno}); {RETRAIN}"
        ) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else None
        raise PredictorError(
            f"{path} is not a latency predictor of format {FORMAT} (found {found!r}); {RETRAIN}"
        )
    problem = _header_problem(header)
    if problem is not None:
        raise PredictorError(f"{path}: {problem}; {RETRAIN}")
    return header


def read_arrays(path: Path, header: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of the predictor whose header is `header`, checked against its digest and
    against the shapes the header implies (see the module docstring)."""
    if not path.is_file():
        raise PredictorError(f"the predictor's arrays are missing: {path}")
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != header["arrays_sha256"]:
        raise PredictorError(f"{path} does not match its header (sha256 differs)")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile) as exc:  # .npy: TypeError
        raise PredictorError(
            f"{path} is not a predictor's arrays (.npz): {exc}; {RETRAIN}"
        ) from None
    for name, shape in _expected_shapes(header, arrays):
        found = arrays.get(name)
        if found is None:
            raise PredictorError(
                f"{path}: no array {name!r} (expected shape {_shape(shape)}); {RETRAIN}"
            )
        if not _fits(found, shape):
            raise PredictorError(
                f"{path}: array {name!r} has shape {_shape(found.shape)} ({found.dtype}), "
                f"expected numbers of shape {_shape(shape)}; {RETRAIN}"
            )
    return arrays


def _expected_shapes(
    header: dict[str, Any], arrays: dict[str, np.ndarray]
) -> Iterator[tuple[str, tuple[int | None, ...]]]:
    """(array name, expected shape) in order, None meaning any size; hidden widths are read off
    the arrays (a generator: a header claiming a billion members fails at the first missing)."""
    f = len(header["feature_names"])
    yield from (("mean", (f,)), ("scale", (f,)), ("correction", (f,)), ("output_map", (2,)))
    yield "residuals", (None,)
    for k in range(header["members"]):
        yield f"m{k}.quadratic", (1 + f + f * (f + 1) // 2,)
        width: int | None = f
        for i in range(header["layers"]):
            weight = arrays.get(f"m{k}.w{i}")
            if i == header["layers"] - 1:
                out: int | None = 1
            else:
                out = weight.shape[1] if weight is not None and weight.ndim == 2 else None
            yield f"m{k}.w{i}", (width, out)
            yield f"m{k}.b{i}", (out,)
            width = out


def _fits(array: np.ndarray, shape: tuple[int | None, ...]) -> bool:
    """`array` holds real numbers and has `shape` (None matching any size)."""
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        return False
    return array.ndim == len(shape) and all(e is None or e == n for e, n in zip(shape, array.shape))


def _shape(shape: tuple[int | None, ...]) -> str:
    """`(10, any)`: a shape, None written as any."""
    sizes = ["any" if n is None else str(n) for n in shape]
    return f"({', '.join(sizes)}{',' if len(sizes) == 1 else ''})"
