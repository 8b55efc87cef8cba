"""Search spaces: the `SearchSpace` that samples, mutates and encodes architectures (`arch.py`).

A space is data (a TOML preset) over an architecture type. The architecture type names its fields
in a fixed order; scalar fields take one choice, per-layer fields take one choice per active layer
of the layer-count field they repeat over. Everything here (gene layout, features, sampling) is
derived from that description, so a second task (BERT) only adds another architecture type.
"""

from __future__ import annotations

import hashlib
import json
import random
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mos_search.arch import ARCH_TYPES, SHARE_EMBEDDINGS_DEFAULT, ArchBase
from mos_search.errors import ArchError, SpaceError
from mos_search.files import read_text
from mos_search.settings import check_keys

PRESET_PACKAGE = "mos_search.presets"
# top-level keys of a space file: these, the [choices] table and the task's settings
SPACE_KEYS = ("name", "task", "description", "choices")
TASK_SETTINGS: dict[str, tuple[str, ...]] = {
    "translation": ("qkv_dim", "share_embeddings"),
    "bert": (),
}
# Ceilings on any one choice, checked when a space loads (before anything is built): above every
# published Transformer (GPT-3 175B, Brown et al. 2020, Table 2.1: 96 layers, width 12,288), so a
# mistyped value (an extra zero or three) is one line instead of minutes of allocation.
MAX_LAYERS = 128  # a layer-count field (encoder_layers, decoder_layers, layers)
MAX_WIDTH = 65_536  # any other field or width setting (embedding, FFN, heads, qkv_dim)
# Settings that change no architecture's layers or features, only the size of its embedding
# tables: left out of the digest, so predictors and spaces saved before they existed still match.
TABLE_SETTINGS = ("share_embeddings",)


class SearchSpace:
    """The choices of every architecture field, and the operations the search needs on them.

    Gene layout (for NSGA-II): one integer per scalar field and `max(layer count choices)` integers
    per per-layer field, each an index into that field's choices, in field order. Positions of
    inactive layers are carried (so a mutated layer count has values to wake up) but ignored.

    Features (for the router and latency predictor), one per field in field order: the value
    divided by the field's largest choice; per-layer fields give the mean over active layers.
    """

    def __init__(
        self,
        name: str,
        arch_type: type[ArchBase],
        choices: Mapping[str, Sequence[int]],
        settings: Mapping[str, Any] | None = None,
        description: str = "",
        source: str = "",
    ) -> None:
        self.name = name
        self.source = source or f"space {name!r}"  # where it was read, for messages
        self.arch_type = arch_type
        self.description = description
        self.settings = dict(settings or {})
        self.choices = _checked_choices(arch_type, choices)
        for key in ("qkv_dim",):
            if isinstance(self.settings.get(key), int):
                _check_ceiling(key, self.settings[key], layer_count=False)
        arch_type.check_choices(self.choices, self.settings)
        self.gene_layout: tuple[tuple[str, int | None], ...] = tuple(
            (name_, i)
            for name_ in arch_type.field_names()
            for i in (range(self.max_layers(name_)) if name_ in arch_type.PER_LAYER else [None])
        )

    # ----------------------------------------------------------------- description
    @property
    def task(self) -> str:
        """The task this space's architectures are for ("translation", ...)."""
        return self.arch_type.TASK

    @property
    def qkv_dim(self) -> int:
        """Fixed width of attention query/key/value projections (translation spaces)."""
        if "qkv_dim" not in self.settings:
            raise SpaceError(f"space {self.name!r} ({self.task}) has no fixed qkv_dim")
        return int(self.settings["qkv_dim"])

    @property
    def share_embeddings(self) -> str:
        """Which embedding tables a translation model shares (`arch.SHARE_EMBEDDINGS`): "all"
        (one table for encoder input, decoder input and output projection) or "decoder" (the
        target table tied to the output projection). A space without the setting, saved
        before it existed, means "decoder": its checkpoints hold two tables."""
        self.require_task("translation", "share_embeddings")
        return str(self.settings.get("share_embeddings", SHARE_EMBEDDINGS_DEFAULT))

    def require_task(self, task: str, what: str) -> None:
        """A clear error when `what` does not apply to this space's task."""
        if self.task != task:
            raise SpaceError(f"{what} is for {task} spaces; {self.name!r} is a {self.task} space")

    def max_layers(self, per_layer_field: str) -> int:
        """Largest layer count the given per-layer field can repeat over."""
        return max(self.choices[self.arch_type.PER_LAYER[per_layer_field]])

    def max_choice(self, field_name: str) -> int:
        """Largest value a field can take."""
        return max(self.choices[field_name])

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the feature vector's entries, in order."""
        return self.arch_type.field_names()

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, task={self.task!r})"

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this space exactly (saved inside checkpoints)."""
        return {
            "name": self.name,
            "task": self.task,
            "description": self.description,
            "choices": {k: list(v) for k, v in self.choices.items()},
            **self.settings,
        }

    @property
    def digest(self) -> str:
        """Short sha256 of what the space holds: task, choices and settings (not its name or
        description, nor `TABLE_SETTINGS`: which tables are shared changes no layer, feature or
        latency). A custom space that reuses a preset's name with other choices differs
        here, so checks that two spaces match compare this, not only the name."""
        content = {
            "task": self.task,
            "choices": {k: list(v) for k, v in self.choices.items()},
            "settings": {k: v for k, v in self.settings.items() if k not in TABLE_SETTINGS},
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def identity(self) -> str:
        """Name and content digest, for messages: `'cpu-small' (choices 3f2a...)`."""
        return f"{self.name!r} (choices {self.digest})"

    # ----------------------------------------------------------------- membership
    def validate(self, arch: ArchBase) -> ArchBase:
        """Return `arch` if it is a member; else raise ArchError naming field, value and choices."""
        if not isinstance(arch, self.arch_type):
            raise ArchError(
                f"expected a {self.arch_type.__name__} for space {self.name!r}, "
                f"found {type(arch).__name__}"
            )
        for name in self.arch_type.field_names():
            value, allowed = getattr(arch, name), self.choices[name]
            for i, v in enumerate(value if isinstance(value, tuple) else (value,)):
                if v not in allowed:
                    where = f"{name}[{i}]" if isinstance(value, tuple) else name
                    raise ArchError(
                        f"{where} = {v} is not in space {self.name!r}; choices: {list(allowed)}"
                    )
        return arch

    def contains(self, arch: ArchBase) -> bool:
        """True when `arch` is a member of this space."""
        try:
            self.validate(arch)
        except ArchError:
            return False
        return True

    def arch_from_dict(self, data: Mapping[str, Any]) -> ArchBase:
        """Parse and validate an architecture dict."""
        return self.validate(self.arch_type.from_dict(data))

    def arch_from_json(self, text: str) -> ArchBase:
        """Parse and validate architecture JSON."""
        return self.validate(self.arch_type.from_json(text))

    # ----------------------------------------------------------------- members
    def sample(self, rng: random.Random) -> ArchBase:
        """A uniformly random member: every field and every layer drawn independently."""
        return self.from_gene(self._random_gene(rng))

    def largest(self) -> ArchBase:
        """The member with every field at its largest choice."""
        return self.from_gene(self.gene_bounds()[1])

    def smallest(self) -> ArchBase:
        """The member with every field at its smallest choice."""
        return self.from_gene(self.gene_bounds()[0])

    def mutate(self, arch: ArchBase, p: float, rng: random.Random) -> ArchBase:
        """Re-draw each gene with probability `p`; newly active layers get random values."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"mutation probability must be in [0, 1], found {p}")
        gene = self._filled_gene(arch, rng)
        for pos, (name, _) in enumerate(self.gene_layout):
            if rng.random() < p:
                gene[pos] = rng.randrange(len(self.choices[name]))
        return self.from_gene(gene)

    def crossover(self, a: ArchBase, b: ArchBase, rng: random.Random) -> ArchBase:
        """Uniform crossover: each gene taken from `a` or `b` with equal probability."""
        gene_a, gene_b = self._filled_gene(a, rng), self._filled_gene(b, rng)
        return self.from_gene([x if rng.random() < 0.5 else y for x, y in zip(gene_a, gene_b)])

    # ----------------------------------------------------------------- encodings
    def gene_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Inclusive integer bounds of every gene position (lower is all zeros)."""
        upper = np.array([len(self.choices[name]) - 1 for name, _ in self.gene_layout])
        return np.zeros_like(upper), upper

    def to_gene(self, arch: ArchBase) -> np.ndarray:
        """Integer gene of a member; inactive layer positions are 0."""
        self.validate(arch)
        gene = []
        for name, layer in self.gene_layout:
            value = getattr(arch, name)
            if layer is not None:
                value = value[layer] if layer < len(value) else self.choices[name][0]
            gene.append(self.choices[name].index(value))
        return np.array(gene, dtype=np.int64)

    def from_gene(self, gene: Sequence[int] | np.ndarray) -> ArchBase:
        """The member a gene encodes; positions of inactive layers are ignored."""
        gene = [int(g) for g in gene]
        if len(gene) != len(self.gene_layout):
            raise ArchError(
                f"gene has {len(gene)} positions, space {self.name!r} expects "
                f"{len(self.gene_layout)}"
            )
        values: dict[str, Any] = {}
        for (name, layer), g in zip(self.gene_layout, gene):
            allowed = self.choices[name]
            if not 0 <= g < len(allowed):
                raise ArchError(
                    f"gene position for {name} holds {g}; expected 0..{len(allowed) - 1}"
                )
            if layer is None:
                values[name] = allowed[g]
            else:
                values.setdefault(name, []).append(allowed[g])
        for name, count_field in self.arch_type.PER_LAYER.items():
            values[name] = values[name][: values[count_field]]
        return self.arch_type(**values)

    def canonical_gene(self, gene: Sequence[float] | np.ndarray) -> np.ndarray:
        """Round and clip `gene` into the bounds; inactive layers repeat the last active one.

        Two genes of the same member have the same canonical gene, so duplicates are found by
        comparing genes, and a layer that a later mutation activates starts as a copy of its
        neighbour instead of always the smallest choice.
        """
        low, high = self.gene_bounds()
        values = np.clip(np.rint(np.asarray(gene, dtype=float)), low, high).astype(np.int64)
        arch = self.from_gene(values)
        out = values.copy()
        for pos, (name, layer) in enumerate(self.gene_layout):
            active = len(getattr(arch, name)) if layer is not None else 0
            if layer is not None and layer >= active:
                out[pos] = out[pos - (layer - active + 1)]
        return out

    def features(self, arch: ArchBase) -> list[float]:
        """Normalised summary vector (see class docstring); fixed length, one entry per field."""
        out = []
        for name in self.arch_type.field_names():
            value = getattr(arch, name)
            mean = sum(value) / len(value) if isinstance(value, tuple) else value
            out.append(float(mean) / self.max_choice(name))
        return out

    # ----------------------------------------------------------------- helpers
    def _random_gene(self, rng: random.Random) -> list[int]:
        return [rng.randrange(len(self.choices[name])) for name, _ in self.gene_layout]

    def _filled_gene(self, arch: ArchBase, rng: random.Random) -> list[int]:
        """Gene of `arch` whose inactive layer positions hold random values."""
        gene, noise = self.to_gene(arch).tolist(), self._random_gene(rng)
        for pos, (name, layer) in enumerate(self.gene_layout):
            if layer is not None and layer >= len(getattr(arch, name)):
                gene[pos] = noise[pos]
        return gene


def _checked_choices(
    arch_type: type[ArchBase], choices: Mapping[str, Sequence[int]]
) -> dict[str, tuple[int, ...]]:
    names = arch_type.field_names()
    check_keys(choices, names, "choices", required=names, noun="field", error=SpaceError)
    checked = {}
    for name in names:
        values = choices[name]
        if (
            not isinstance(values, (list, tuple))
            or not values
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
        ):
            raise SpaceError(
                f"{name}: expected a non-empty list of positive integers, found {values!r}"
            )
        if len(set(values)) != len(values):
            raise SpaceError(f"{name}: choices repeat a value: {list(values)}")
        checked[name] = tuple(sorted(values))
        _check_ceiling(name, max(values), layer_count=name in arch_type.PER_LAYER.values())
    return checked


def _check_ceiling(name: str, value: int, layer_count: bool) -> None:
    """SpaceError when one choice is beyond the documented ceiling (`MAX_LAYERS`, `MAX_WIDTH`)."""
    ceiling, what = (MAX_LAYERS, "layer count") if layer_count else (MAX_WIDTH, "width")
    if value > ceiling:
        raise SpaceError(
            f"{name}: {value:,} is beyond the ceiling of {ceiling:,} for a {what} "
            f"(mos_search.space.{'MAX_LAYERS' if layer_count else 'MAX_WIDTH'}); "
            "a mistyped value?"
        )


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    root = resources.files(PRESET_PACKAGE)
    return sorted(p.name[: -len(".toml")] for p in root.iterdir() if p.name.endswith(".toml"))


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load a search space by preset name (e.g. "cpu-small") or from a TOML file path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpaceError(f"search-space file not found: {path}")
        text, source = read_text(path), str(path)  # not UTF-8: `PATH:LINE: not UTF-8 text`
    else:
        known = preset_names()
        if str(name_or_path) not in known:
            raise SpaceError(
                f"unknown search space {str(name_or_path)!r}; presets: "
                f"{', '.join(known)} (or give a .toml path)"
            )
        text = resources.files(PRESET_PACKAGE).joinpath(f"{name_or_path}.toml").read_text("utf-8")
        source = f"preset {name_or_path!r}"
    return space_from_toml(text, source)


def space_from_toml(text: str, source: str = "<string>") -> SearchSpace:
    """Parse preset TOML text; every problem is a SpaceError naming `source`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"{source}: not valid TOML: {exc}") from exc
    return space_from_dict(data, source)


def space_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> SearchSpace:
    """Build a space from parsed preset data (as `SearchSpace.to_dict` writes it); every problem,
    an unknown top-level key included, is a SpaceError naming `source`."""
    task = data.get("task") if isinstance(data, Mapping) else None
    if task in TASK_SETTINGS:
        settings_keys = TASK_SETTINGS[task]
    else:  # the task is reported below; a misspelt key is reported first
        settings_keys = tuple(dict.fromkeys(k for keys in TASK_SETTINGS.values() for k in keys))
    check_keys(data, (*SPACE_KEYS, *settings_keys), source, error=SpaceError)
    try:
        if task not in ARCH_TYPES:
            raise SpaceError(f"task: expected one of {sorted(ARCH_TYPES)}, found {task!r}")
        if not isinstance(data.get("choices"), dict):
            raise SpaceError("expected a [choices] table")
        settings = {k: v for k, v in data.items() if k not in SPACE_KEYS}
        return SearchSpace(
            name=str(data.get("name", source)),
            arch_type=ARCH_TYPES[task],
            choices=data["choices"],
            settings=settings,
            description=str(data.get("description", "")),
            source=source,
        )
    except SpaceError as exc:
        raise SpaceError(f"{source}: {exc}") from None
