"""Command line: help, version and one-line errors through click's test runner."""

from __future__ import annotations

from click.testing import CliRunner

from mos_search import __version__
from mos_search.cli import main


def test_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "space" in result.output and "Example" in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_space_command_shows_sizes():
    result = CliRunner().invoke(main, ["space", "cpu-small"])
    assert result.exit_code == 0
    assert "largest" in result.output and "9.63 M parameters" in result.output


def test_unknown_space_is_one_line_error():
    result = CliRunner().invoke(main, ["space", "nope"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: unknown search space 'nope'; presets: cpu-small, hat-wmt14 (or give a .toml path)"
    ]
