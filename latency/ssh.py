"""SSH transport: the OpenSSH client (`ssh`) carries everything; no protocol of our own.

`SshConnection` opens one shared connection (OpenSSH's ControlMaster: one handshake, not one per
command), runs argument lists on the target and streams a command's stdout back line by line.

Security: host keys are checked (`StrictHostKeyChecking=yes`; `check_host_key=False` skips it,
for tests and throwaway machines); `BatchMode=yes` never prompts. The command the target's shell
runs is built from an argument list with `shlex.join`, every argument quoted; the local `ssh` is
started from an argument list, never through a shell. Host and user names are checked before
use. Nothing about keys or the SSH configuration is written anywhere.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

SSH_FAILED = 255  # what `ssh` exits with when the connection fails or drops
_HOST = re.compile(r"^[A-Za-z0-9._:\[\]-]+$")
_USER = re.compile(r"^[A-Za-z0-9._-]+$")


class RemoteError(Exception):
    """The target cannot be reached, lacks what the agent needs, or the agent failed there."""


@dataclass(frozen=True)
class SshTarget:
    """Where to measure: `ssh://[user@]host[:port]`."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, url: str) -> SshTarget:
        """`ssh://user@host:port` (user and port optional); a ValueError saying what is wrong."""
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise ValueError(f"expected ssh://[user@]host[:port], found {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
            raise ValueError(f"expected ssh://[user@]host[:port] and nothing more, found {url!r}")
        try:
            port = parts.port
        except ValueError:
            port = -1
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"the port of {url!r} is not a number from 1 to 65535")
        host, user = parts.hostname, parts.username
        if not _HOST.match(host) or host.startswith("-"):
            raise ValueError(f"host {host!r} has characters a host name cannot have")
        if user is not None and (not _USER.match(user) or user.startswith("-")):
            raise ValueError(f"user {user!r} has characters a user name cannot have")
        return cls(host, user, port)

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6
        return f"ssh://{user}{host}{port}"


@dataclass(frozen=True)
class RemoteOptions:
    """How to reach the target and where the agent keeps its files there (relative paths are
    under the remote user's home)."""

    target: SshTarget
    python: str = "python3"
    directory: str = ".cache/mos-search-agent"
    ssh_config: Path | None = None
    check_host_key: bool = True
    connect_timeout_s: int = 20

    def __post_init__(self) -> None:
        # `~/x` reaches us quoted (a shell would have expanded it): commands run in the remote
        # home, so it is the relative path `x` there
        for name in ("python", "directory"):
            value = getattr(self, name)
            if value.startswith("~/"):
                object.__setattr__(self, name, value[2:])


class SshConnection:
    """One SSH target, one shared connection: runs argument lists there (each quoted with
    `shlex.join`), with bytes or a file on stdin, or streaming stdout line by line."""

    def __init__(self, options: RemoteOptions) -> None:
        self.options = options
        self.process: subprocess.Popen | None = None  # the streaming `ssh`, while it runs
        self.control: Path | None = None  # the shared connection's socket, while open

    def __enter__(self) -> SshConnection:
        """Open one connection that every command shares (OpenSSH's ControlMaster): one
        handshake instead of one per step. A RemoteError when it cannot connect."""
        folder = Path(tempfile.mkdtemp(prefix="mos-ssh-"))  # short: a socket path has a limit
        self.control = folder / "c"
        with tempfile.TemporaryFile() as errors:
            # closed by __exit__; if this process is killed first, it exits after 10 idle minutes
            master = [*self._ssh(), "-M", "-N", "-f", "-o", "ControlPersist=600", "--"]
            try:
                code = subprocess.run(
                    [*master, self.options.target.host],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                ).returncode
            except FileNotFoundError:
                missing = "no `ssh` client here (Debian: apt-get install openssh-client)"
                raise RemoteError(missing) from None
            errors.seek(0)
            said = _last_line(errors.read())
        if code != 0:
            self.__exit__()
            raise RemoteError(f"connecting to {self.options.target} failed: {_hint(said)}")
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the shared connection."""
        if self.control is None:
            return
        if self.control.exists():
            stop = [*self._ssh(), "-O", "exit", "--", self.options.target.host]
            subprocess.run(stop, capture_output=True, stdin=subprocess.DEVNULL)
        shutil.rmtree(self.control.parent, ignore_errors=True)
        self.control = None

    def ssh_argv(self, argv: list[str]) -> list[str]:
        """The local `ssh` command running `argv` on the target (quoted with `shlex.join`)."""
        return [*self._ssh(), "--", self.options.target.host, shlex.join(argv)]

    def _ssh(self) -> list[str]:
        """`ssh` and its options, up to the host."""
        o = self.options
        command = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={o.connect_timeout_s}"]
        if self.control is not None:
            command += ["-o", f"ControlPath={self.control}"]
        command += ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        if o.ssh_config is not None:
            command += ["-F", str(o.ssh_config)]
        if o.check_host_key:
            command += ["-o", "StrictHostKeyChecking=yes"]
        else:
            command += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
            command += ["-o", "LogLevel=ERROR"]
        if o.target.port:
            command += ["-p", str(o.target.port)]
        if o.target.user:
            command += ["-l", o.target.user]
        return command

    def run(self, argv: list[str], what: str, stdin: bytes | BinaryIO | None = None) -> bytes:
        """Run `argv` on the target and return its stdout; a RemoteError naming `what` with the
        last line the target (or ssh) wrote on stderr. `stdin`: bytes, or an open file."""
        feed = {"input": stdin} if isinstance(stdin, bytes) else {"stdin": stdin}
        try:
            done = subprocess.run(self.ssh_argv(argv), capture_output=True, **feed)
        except FileNotFoundError:
            missing = "no `ssh` client here (Debian: apt-get install openssh-client)"
            raise RemoteError(missing) from None
        if done.returncode != 0:
            said = _hint(_last_line(done.stderr))
            raise RemoteError(f"{what} on {self.options.target} failed: {said}")
        return done.stdout

    def stream(self, argv: list[str], on_line: Callable[[bytes], None]) -> tuple[int, str]:
        """Run `argv` there, calling `on_line` with each stdout line as it arrives; (exit code,
        last stderr line)."""
        errors: deque[str] = deque(maxlen=20)
        self.process = process = subprocess.Popen(
            self.ssh_argv(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

        def drain() -> None:
            for raw in process.stderr:
                errors.append(raw.decode("utf-8", "replace").rstrip())

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            for raw in process.stdout:
                on_line(raw)
        except BaseException:  # a bad record or Ctrl-C here: stop the remote side too
            process.kill()
            raise
        finally:
            try:
                code = process.wait(timeout=60)  # stdout closed: ssh is about to exit
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            reader.join(timeout=5)
            self.process = None
        return code, (errors[-1] if errors else "")


def _hint(said: str) -> str:
    """What ssh said, with what to do where it is a refused host key."""
    if "Host key verification failed" in said:
        said += (
            " (its key is not in known_hosts: connect once with ssh to check and record it; "
            "--no-host-key-check only for a throwaway target)"
        )
    return said


def _last_line(stderr: bytes) -> str:
    lines = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1].removeprefix("agent: ") if lines else "no message"
