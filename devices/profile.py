"""Device profiles: which backend runs and under what measuring conditions (TOML files).

`parse_profile` reads a file (UTF-8, known settings of the right types); `devices.registry.
load_profile` then has the backend check the `[options]` table, since only the backend knows
which options it reads. Every problem is one `ProfileError` line naming the file.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from devices.text import NotUtf8, decode_utf8, did_you_mean

STATISTICS = ("median", "trimmed_mean")


class ProfileError(ValueError):
    """A device profile is unknown or malformed."""


@dataclass(frozen=True)
class DeviceProfile:
    """Measuring conditions. Translation: encoder once at batch 1, then `decoder_steps` cached
    decoder steps at batch `beam`; BERT: one forward of `bert_batch` x `bert_seq_len`."""

    name: str
    backend: str
    threads: int = 1
    inter_op_threads: int = 1
    beam: int = 5
    source_len: int = 30
    decoder_steps: int = 30
    bert_seq_len: int = 128
    bert_batch: int = 1
    warmups: int = 5
    repeats: int = 20
    statistic: str = "median"
    trim: float = 0.1
    max_spread: float = 0.10
    retries: int = 2
    confidence: float = 0.95  # of the interval around every measured statistic (latency.protocol)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in (
            "threads",
            "inter_op_threads",
            "beam",
            "source_len",
            "decoder_steps",
            "bert_seq_len",
            "bert_batch",
            "repeats",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ProfileError(
                    f"{self.name}: {name} must be a positive integer, found {value!r}"
                )
        if self.warmups < 0 or self.retries < 0:
            raise ProfileError(f"{self.name}: warmups and retries must be >= 0")
        if self.statistic not in STATISTICS:
            raise ProfileError(
                f"{self.name}: statistic must be one of {', '.join(STATISTICS)}, "
                f"found {self.statistic!r}"
            )
        if not 0 <= self.trim < 0.5:
            raise ProfileError(f"{self.name}: trim must be in [0, 0.5), found {self.trim}")
        if not self.max_spread > 0:
            raise ProfileError(f"{self.name}: max_spread must be positive, found {self.max_spread}")
        if not 0 < self.confidence < 1:
            raise ProfileError(
                f"{self.name}: confidence must be in (0, 1), e.g. 0.95, found {self.confidence}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def digest(self) -> str:
        """Short digest of every setting that changes what is timed: records measured under other
        settings differ. `confidence` is left out: it only changes the interval computed from the
        recorded samples, so datasets measured before it existed keep their digest."""
        settings = {k: v for k, v in self.to_dict().items() if k != "confidence"}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def profile_names() -> list[str]:
    """Profiles shipped in `devices/profiles/`."""
    root = resources.files("devices.profiles")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def parse_profile(name_or_path: str | Path) -> tuple[DeviceProfile, str]:
    """A profile by shipped name (e.g. "onnxruntime-cpu") or from a TOML file, and where it came
    from for messages (the path, or `profile 'NAME'`). Its `[options]` are not checked here:
    use `devices.load_profile`, which has the backend check them."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ProfileError(f"device profile not found: {path}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ProfileError(f"cannot read {path}: {exc.strerror}") from None
        text, name, where = decode_profile(data, path), path.stem, str(path)
    else:
        if str(name_or_path) not in profile_names():
            raise ProfileError(
                f"unknown device profile {str(name_or_path)!r}; shipped: "
                f"{', '.join(profile_names())} (or give a .toml path)"
            )
        name = str(name_or_path)
        text = resources.files("devices.profiles").joinpath(f"{name}.toml").read_text("utf-8")
        where = f"profile {name!r}"
    try:
        settings = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{where}: not valid TOML: {exc}") from None
    return profile_from_dict(settings, name, where), where


# the type of each setting as a TOML file gives it (a float setting takes an integer too)
_SETTING_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "str": (str, "a string"),
    "int": (int, "an integer"),
    "float": ((int, float), "a number"),
    "dict[str, Any]": (dict, "an [options] table"),
}


def profile_from_dict(settings: dict[str, Any], name: str, where: str) -> DeviceProfile:
    """A profile from the settings of a file; unknown settings, a missing backend and values of
    the wrong type are a ProfileError naming `where`."""
    known = [f.name for f in fields(DeviceProfile)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ProfileError(
            f"{where}: unknown setting(s): {', '.join(unknown)}; known: {', '.join(known)}"
            f"{did_you_mean(unknown, known)}"
        )
    if "backend" not in settings:
        raise ProfileError(f"{where}: missing setting 'backend'")
    for f in fields(DeviceProfile):
        value, (kind, expected) = settings.get(f.name), _SETTING_TYPES[str(f.type)]
        if f.name in settings and (isinstance(value, bool) or not isinstance(value, kind)):
            raise ProfileError(f"{where}: {f.name}: expected {expected}, found {value!r}")
    try:
        return DeviceProfile(**{"name": name, **settings})
    except ProfileError as exc:  # its checks name the profile; the file is named here instead
        raise ProfileError(f"{where}: {str(exc).removeprefix(f'{name}: ')}") from None


def decode_profile(data: bytes, path: str | Path) -> str:
    """The text of a profile file; a ProfileError `PATH:LINE: not UTF-8 text ...`."""
    try:
        return decode_utf8(data)
    except NotUtf8 as exc:
        raise ProfileError(f"{path}:{exc.line}: {exc}") from None
