"""Search-space presets shipped as TOML data files."""
