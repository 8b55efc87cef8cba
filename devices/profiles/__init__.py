"""Shipped device profiles (TOML)."""
