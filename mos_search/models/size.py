"""Does a model fit in this machine's memory? Checked from the space alone, before allocating.

A space loads only within the ceilings of `space.MAX_LAYERS` and `space.MAX_WIDTH`; below them a
space can still ask for a supernet no machine here can hold (every field at its ceiling is
trillions of parameters). `check_fits` takes the exact parameter count (`build.check_spec_fits`
builds the model on PyTorch's meta device, which allocates nothing), multiplies it by the bytes
each parameter costs for the work at hand and compares with the memory available now (`psutil`),
so the user gets
one line naming the space file, the field that contributes most, the bytes needed and the bytes
available instead of an allocator traceback minutes later. Activations come on top, so passing
the check does not promise a run fits; failing it promises it does not.

`mos-search --allow-large ...` (or the environment variable `MOS_SEARCH_ALLOW_LARGE=1`, which
worker processes inherit) skips the memory comparison; the ceilings hold regardless.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mos_search.errors import ConfigError, SpaceError
from mos_search.space import SearchSpace, space_from_dict

INFERENCE_BYTES_PER_PARAMETER = 4  # fp32 weights
TRAINING_BYTES_PER_PARAMETER = 16  # fp32 weights, their gradients and Adam's two moments
ALLOW_LARGE_ENV = "MOS_SEARCH_ALLOW_LARGE"


def large_allowed() -> bool:
    """Whether the user asked to skip the memory comparison (`--allow-large`)."""
    return os.environ.get(ALLOW_LARGE_ENV, "") not in ("", "0")


def available_memory_bytes() -> int:
    """Memory the operating system can give a new allocation now (psutil's `available`)."""
    import psutil

    return int(psutil.virtual_memory().available)


def dominant_field(space: SearchSpace, count: Callable[[SearchSpace], int]) -> str:
    """The field whose largest choice costs the most parameters: the one that, cut down to its
    smallest choice, shrinks `count` the most."""
    full, saved = count(space), {}
    for name, values in space.choices.items():
        if len(values) == 1:
            continue
        choices = {**space.choices, name: (values[0],)}
        try:
            smaller = space_from_dict({**space.to_dict(), "choices": choices})
        except SpaceError:  # e.g. a smaller encoder than decoder_ende_layers reaches
            continue
        saved[name] = full - count(smaller)
    name = max(saved, key=saved.get) if saved else max(space.choices, key=space.max_choice)
    return f"{name} (up to {space.max_choice(name):,})"


def check_fits(
    space: SearchSpace,
    count: Callable[[SearchSpace], int],
    bytes_per_parameter: int,
    what: str,
) -> int:
    """The parameter count of `what` (`count(space)`); raise ConfigError, one line naming the
    space's file, its dominant field, the bytes needed and the bytes available, when it does
    not fit in memory now (unless `large_allowed()`)."""
    parameters = count(space)
    needed = parameters * bytes_per_parameter
    available = available_memory_bytes()
    if needed > available and not large_allowed():
        raise ConfigError(
            f"{space.source}: {what} needs {gib(needed)} ({parameters:,} parameters x "
            f"{bytes_per_parameter} bytes) and this machine has {gib(available)} available; "
            f"most of it comes from {dominant_field(space, count)}: shrink the space, or run "
            "`mos-search --allow-large ...` to try anyway"
        )
    return parameters


def gib(n_bytes: int) -> str:
    """Bytes for a message: `1.5 MiB`, `21.3 GiB`, `1,024.0 TiB`."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.1f} {unit}"
    return f"{n_bytes / 2**20:,.1f} MiB"
