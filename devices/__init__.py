"""Per-device backends that load a model bundle and time it with the right clock."""
