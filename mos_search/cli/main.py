"""The `mos-search` group: every command, and toolkit errors as one line with exit code 2."""

from __future__ import annotations

import os
import sys

import click

from devices.base import DeviceError
from devices.profile import ProfileError
from latency.bundles import BundleError
from latency.dataset import DatasetError
from latency.memory_model import MemoryModelError
from latency.predictor import PredictorError
from latency.ssh import RemoteError
from mos_search.cli import calibrate, data, deploy, fidelity, latency, memory, search, train
from mos_search.constants import VERSION
from mos_search.errors import MosSearchError
from mos_search.models.size import ALLOW_LARGE_ENV


class FriendlyGroup(click.Group):
    """A click group that prints toolkit errors as one line and exits non-zero."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; a toolkit error becomes `error: ...` on stderr and exit code 2."""
        try:
            return super().invoke(ctx)
        except (
            MosSearchError,
            DeviceError,
            ProfileError,
            PredictorError,
            DatasetError,
            BundleError,
            RemoteError,
            MemoryModelError,
        ) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except click.BadParameter as exc:  # an option value out of its range, or of no number
            message = exc.format_message()
            click.echo(f"error: {message[:1].lower()}{message[1:]}", err=True)
            sys.exit(2)
        except OSError as exc:  # a path the command could not read or write
            click.echo(f"error: {os_error_line(exc)}", err=True)
            sys.exit(2)


def os_error_line(exc: OSError) -> str:
    """One line for a failed file operation: what, where and why (`cannot write x: Read-only
    file system`)."""
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    reason = exc.strerror or str(exc)
    return f"cannot use {' -> '.join(names)}: {reason}" if names else reason


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(VERSION, prog_name="mos-search")
@click.option(
    "--allow-large",
    is_flag=True,
    help="Build a model even where its weights (and, to train, gradients and Adam's moments) "
    "exceed the memory available now; the ceilings on layer counts and widths still hold.",
)
def main(allow_large: bool) -> None:
    """Hardware-aware architecture search for Transformers with Mixture-of-Supernets.

    \b
    Example:
      mos-search space cpu-small
      mos-search --allow-large train --space my-big-space.toml --out runs/big
    """
    if allow_large:  # an environment variable, so that worker processes see it too
        os.environ[ALLOW_LARGE_ENV] = "1"


for _command in (
    data.space_command,
    data.data_group,
    train.train_command,
    train.score_command,
    fidelity.fidelity_command,
    fidelity.size_quality_command,
    latency.devices_command,
    latency.profile_command,
    latency.predictor_group,
    search.search_command,
    search.report_command,
    deploy.export_command,
    deploy.finetune_command,
    deploy.translate_command,
    deploy.demo_command,
    deploy.pack_supernet_command,
):
    main.add_command(_command)
latency.predictor_group.add_command(memory.predictor_memory)
latency.predictor_group.add_command(calibrate.predictor_calibrate)
