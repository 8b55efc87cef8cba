"""The options that send measuring to another machine over SSH (`profile`, `search`, `export`).

`remote_options` adds `--remote ssh://[user@]host[:port]`, `--remote-python`, `--remote-dir`,
`--ssh-config` and `--no-host-key-check`, and hands the command one `remote` argument: a
`latency.ssh.RemoteOptions`, or None to measure here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from latency.ssh import RemoteOptions, SshTarget

REMOTE_HELP = (
    "Measure on this SSH target instead of here: ssh://[user@]host[:port]. It needs Python "
    "3.11+ with onnxruntime and numpy; the agent's code and the models are copied there "
    "(cached). Host keys are checked (see --no-host-key-check)."
)


def remote_from(
    url: str | None,
    python: str,
    directory: str,
    ssh_config: str | None,
    no_host_key_check: bool,
) -> RemoteOptions | None:
    """The RemoteOptions of the options' values (None without `--remote`); a click.BadParameter
    for a malformed URL or SSH options given without `--remote`."""
    if url is None:
        if ssh_config or no_host_key_check:
            raise click.BadParameter(
                "needs --remote", param_hint="--ssh-config/--no-host-key-check"
            )
        return None
    try:
        target = SshTarget.parse(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--remote") from None
    if ssh_config is not None and not Path(ssh_config).is_file():
        raise click.BadParameter(f"no such file: {ssh_config}", param_hint="--ssh-config")
    config = Path(ssh_config) if ssh_config else None
    return RemoteOptions(target, python, directory, config, not no_host_key_check)


def remote_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the SSH options to a click command, which then takes `remote` instead of them."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        remote_url: str | None,
        remote_python: str,
        remote_dir: str,
        ssh_config: str | None,
        no_host_key_check: bool,
        **kwargs: Any,
    ) -> Any:
        remote = remote_from(remote_url, remote_python, remote_dir, ssh_config, no_host_key_check)
        return command(*args, remote=remote, **kwargs)

    options = [
        click.option(
            "--remote", "remote_url", metavar="ssh://[USER@]HOST[:PORT]", help=REMOTE_HELP
        ),
        click.option(
            "--remote-python",
            default="python3",
            show_default=True,
            help="The Python on the target that runs the agent (e.g. a venv's bin/python).",
        ),
        click.option(
            "--remote-dir",
            default=".cache/mos-search-agent",
            show_default=True,
            help="Where the agent keeps its code, bundles and results on the target (relative: "
            "under the remote home).",
        ),
        click.option("--ssh-config", help="An ssh_config file for the connection (ssh -F)."),
        click.option(
            "--no-host-key-check",
            is_flag=True,
            help="Accept any host key (throwaway targets and tests only: open to a man in the "
            "middle).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
