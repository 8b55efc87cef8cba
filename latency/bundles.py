"""Model bundles as folders that travel to another machine: ONNX graphs plus `bundle.json`.

A bundle folder is named by its digest and holds the ONNX files and `bundle.json`:

    {"format": 1, "kind": "translation", "vocab_size": 8000, "bos_id": 2,
     "past_shapes": [[4, 64], ...],
     "graphs": {"encoder": {"file": "encoder.onnx", "sha256": "...", "bytes": 123}, ...},
     "shared": {"file": "shared.bin", "sha256": "...", "bytes": 456}}

Weights the graphs hold several times (a translation model's token table: both graphs look it
up, the decoder step also holds it transposed) are written once, to `shared.bin`, as ONNX
external data the graphs reference (`latency.shared_weights`); `shared` is absent when nothing
repeats. The digest is the SHA-256 of that JSON in
canonical form (sorted keys, no spaces), so it covers every file's content; `read_bundle`
recomputes all of them before a device loads anything. Only JSON, ONNX and raw tensor bytes are
read: nothing is unpickled. Reading needs neither torch nor `mos_search` nor the `onnx` package
(writing a bundle does: it rewrites the graphs).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from devices import ModelBundle
from devices.digest import sha256_file
from latency.shared_weights import SHARED

FORMAT = 1
META = "bundle.json"
DIGEST_CHARS = 64  # full SHA-256: the digest names folders on the target and is checked there


class BundleError(ValueError):
    """A bundle or job that is missing, malformed or does not match its digest."""


def canonical_json(value: Any) -> bytes:
    """The bytes a digest is taken of: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def meta_digest(meta: dict[str, Any]) -> str:
    """The digest of a bundle: SHA-256 of its canonical `bundle.json`."""
    return hashlib.sha256(canonical_json(meta)).hexdigest()


def bundle_meta(bundle: ModelBundle, shared: Path | None = None) -> dict[str, Any]:
    """`bundle.json` of an ONNX bundle (its graphs and `shared` file hashed); a BundleError when
    a graph is missing or the bundle has no ONNX graphs (PyTorch modules do not travel)."""
    _check_graphs(bundle)
    graphs = {
        name: _file_entry(Path(path), f"{name}.onnx") for name, path in sorted(bundle.onnx.items())
    }
    meta = {
        "format": FORMAT,
        "kind": bundle.kind,
        "vocab_size": bundle.vocab_size,
        "bos_id": bundle.bos_id,
        "past_shapes": [list(shape) for shape in bundle.past_shapes],
        "graphs": graphs,
    }
    if shared is not None:
        meta["shared"] = _file_entry(shared, SHARED)
    return meta


def _check_graphs(bundle: ModelBundle) -> None:
    """A BundleError unless every ONNX graph of the bundle is there, its weights inside."""
    if not bundle.onnx:
        raise BundleError("only ONNX bundles travel to another machine; this one has none")
    for name, path in sorted(bundle.onnx.items()):
        if not Path(path).is_file():
            raise BundleError(f"graph {name!r} of the bundle is missing: {path}")
        if Path(f"{path}.data").exists():
            raise BundleError(f"{path} keeps its weights in external data; export it as one file")


def _file_entry(path: Path, name: str) -> dict[str, Any]:
    return {"file": name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_bundle(bundle: ModelBundle, root: str | Path) -> str:
    """Write an ONNX bundle into `root/DIGEST/` (weights the graphs hold several times stored
    once, `latency.shared_weights`; a no-op when that folder is there) and return DIGEST.

    The folder is written as a `.partial` folder and renamed when complete, so an interrupted
    write never leaves a folder under the digest's name."""
    from latency.shared_weights import share_weights

    root = Path(root)
    _check_graphs(bundle)  # before anything is written
    root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".bundle-", suffix=".partial", dir=root))
    try:
        shared = share_weights(dict(bundle.onnx), partial)
        written = replace(bundle, onnx={name: partial / f"{name}.onnx" for name in bundle.onnx})
        meta = bundle_meta(written, shared)
        digest = meta_digest(meta)
        folder = root / digest
        if folder.is_dir():
            return digest
        (partial / META).write_bytes(canonical_json(meta))
        os.replace(partial, folder)
        return digest
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _check_digest_text(digest: str) -> None:
    if len(digest) != DIGEST_CHARS or any(c not in "0123456789abcdef" for c in digest):
        raise BundleError(f"a bundle digest is {DIGEST_CHARS} hex digits, found {digest[:80]!r}")


def read_bundle(root: str | Path, digest: str) -> ModelBundle:
    """The bundle in `root/DIGEST/`, after checking that `bundle.json` hashes to DIGEST and every
    graph file to the SHA-256 it lists; a BundleError saying which check failed."""
    _check_digest_text(digest)
    folder = Path(root) / digest
    meta_path = folder / META
    if not meta_path.is_file():
        raise BundleError(f"bundle {digest[:12]} is not in {root}")
    data = meta_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise BundleError(f"{meta_path}: does not match its digest {digest[:12]} (changed?)")
    try:
        meta = json.loads(data.decode("utf-8"))
        if meta.get("format") != FORMAT:
            raise BundleError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT}")
        onnx = {}
        for name, graph in meta["graphs"].items():
            path = folder / Path(graph["file"]).name  # a name, never a path out of the folder
            if not path.is_file():
                raise BundleError(f"{path}: missing graph {name!r} of bundle {digest[:12]}")
            if sha256_file(path) != graph["sha256"]:
                raise BundleError(f"{path}: SHA-256 differs from bundle.json (changed or torn)")
            onnx[name] = path
        if "shared" in meta:  # the external data the graphs reference
            path = folder / Path(meta["shared"]["file"]).name
            if not path.is_file() or sha256_file(path) != meta["shared"]["sha256"]:
                raise BundleError(f"{path}: missing, or its SHA-256 differs from bundle.json")
        return ModelBundle(
            kind=meta["kind"],
            onnx=onnx,
            past_shapes=[(int(h), int(d)) for h, d in meta["past_shapes"]],
            vocab_size=int(meta["vocab_size"]),
            bos_id=int(meta["bos_id"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{meta_path}: malformed bundle.json ({exc})") from None


def has_bundle(root: str | Path, digest: str) -> bool:
    """Whether `root/DIGEST/` holds that bundle, whole and unchanged."""
    try:
        read_bundle(root, digest)
    except BundleError:
        return False
    return True
