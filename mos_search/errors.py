"""Typed errors raised at the toolkit's boundaries; the CLI turns each into one line."""


class MosSearchError(Exception):
    """Base class of every error a user can cause (bad file, option, config or checkpoint)."""


class SpaceError(MosSearchError):
    """A search-space preset is unknown or malformed."""


class ArchError(MosSearchError, ValueError):
    """An architecture is not a member of the search space."""


class ConfigError(MosSearchError, ValueError):
    """A configuration value is out of range or inconsistent."""


class DataError(MosSearchError):
    """A corpus file or data folder is missing, empty, misaligned or badly encoded."""


class CheckpointError(MosSearchError):
    """A checkpoint is missing, incomplete or does not match what is asked of it."""
