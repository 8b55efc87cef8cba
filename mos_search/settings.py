"""Settings read from dicts (JSON, TOML, checkpoints): one check for missing and unknown keys.

Every `from_dict` of a configuration goes through `check_keys` (or `dataclass_from_dict`), so a
misspelt option is always the same error, naming what was found, what is known and, where one is
close, the key that was probably meant:
`space.toml: unknown key(s): descripton; known: name, task, ... (did you mean description?)`.
Unknown keys are reported before missing ones, so a misspelling is named as such, not as the
key it was meant to be.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, TypeVar

from devices.text import did_you_mean
from mos_search.errors import ConfigError, MosSearchError

T = TypeVar("T")


def check_keys(
    data: Any,
    allowed: Iterable[str],
    what: str,
    required: Iterable[str] = (),
    noun: str = "key",
    error: type[Exception] = ConfigError,
) -> None:
    """Raise `error` unless `data` is a mapping holding every `required` key and only `allowed`
    ones; `what` names the thing in the message ("training options"), `noun` its keys."""
    if not isinstance(data, Mapping):
        raise error(f"{what}: expected a mapping of {noun}s, found {type(data).__name__}")
    allowed = list(allowed)
    unknown = sorted(str(key) for key in set(data) - set(allowed))
    if unknown:
        known = ", ".join(allowed) if allowed else "none"
        raise error(
            f"{what}: unknown {noun}(s): {', '.join(unknown)}; known: {known}"
            f"{did_you_mean(unknown, allowed)}"
        )
    missing = [name for name in required if name not in data]
    if missing:
        raise error(f"{what}: missing {noun}(s): {', '.join(sorted(missing))}")


def dataclass_from_dict(
    cls: type[T],
    data: Mapping[str, Any],
    what: str,
    noun: str = "key",
    error: type[Exception] = ConfigError,
    convert: Mapping[str, Callable[[Any], Any]] | None = None,
) -> T:
    """`cls(**data)` after `check_keys` (fields without a default are required); `convert`
    turns the stored form of some fields back into their values (a dict into a space, ...)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    required = [
        f.name
        for f in fields(cls)  # type: ignore[arg-type]
        if f.default is MISSING and f.default_factory is MISSING
    ]
    check_keys(data, names, what, required, noun, error)
    convert = convert or {}
    try:
        return cls(**{k: convert[k](v) if k in convert else v for k, v in data.items()})
    except (TypeError, ValueError) as exc:
        if isinstance(exc, error):
            raise
        raise error(f"{what}: {exc}") from None


@contextmanager
def naming_file(path: str | Path, part: str = "") -> Iterator[None]:
    """Settings read from a saved file: a toolkit error raised inside names the file (and the
    part of it, `state.json (train_config)`) in front, so an unknown key in a run's own files
    says which file to look at."""
    where = f"{path} ({part})" if part else str(path)
    try:
        yield
    except MosSearchError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise type(exc)(f"{where}: {exc}") from None
