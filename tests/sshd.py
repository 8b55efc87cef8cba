"""A throwaway OpenSSH server on 127.0.0.1 for the tests of measuring over SSH.

`start_sshd(folder)` makes a host key and a user key (ed25519, `ssh-keygen`) in `folder`, starts
Debian's `/usr/sbin/sshd -D -e` on a free port with only public-key logins of that user key, and
writes a client `ssh_config` that uses the key and checks the host key against a known_hosts
file holding it (`[127.0.0.1]:PORT ssh-ed25519 ...`). It returns once a real `ssh ... true`
succeeds. As root the server logs in root (and needs `/run/sshd`); as anyone else it can only log
in the user running it. `SshdUnavailable` says why a server could not be had (the tests skip).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"  # sshd refuses to run unless started by its absolute path
HOST = "127.0.0.1"
READY_S = 20.0


class SshdUnavailable(Exception):
    """No server could be started here (missing programs, or it would not start)."""


@dataclass
class SshServer:
    """A running throwaway sshd and what a client needs to reach it."""

    port: int
    user: str
    folder: Path
    config: Path  # client ssh_config: this user's key, host key checked
    known_hosts: Path
    host_key_line: str  # the known_hosts line of the server's key
    identity: Path
    process: subprocess.Popen
    log: Path

    host = HOST

    @property
    def url(self) -> str:
        """What `--remote` takes."""
        return f"ssh://{self.user}@{HOST}:{self.port}"

    def client_config(self, name: str, known_hosts: str, *extra: str) -> Path:
        """Another client config in the server's folder: the same key, a known_hosts file of
        `known_hosts` text (one line per key), and `extra` config lines."""
        hosts = self.folder / f"{name}.known_hosts"
        hosts.write_text(known_hosts)
        path = self.folder / f"{name}.ssh_config"
        path.write_text(_client_config(self.identity, hosts, extra))
        return path

    def sessions(self) -> list[int]:
        """Process ids of the server's per-connection processes (children of the listener)."""
        pid = self.process.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def stop(self) -> None:
        """Stop the server (and any connection it still serves)."""
        for pid in self.sessions():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _client_config(identity: Path, known_hosts: Path, extra: tuple[str, ...] = ()) -> str:
    lines = [
        f"Host {HOST}",
        f"  IdentityFile {identity}",
        "  IdentitiesOnly yes",
        "  PubkeyAuthentication yes",
        "  PasswordAuthentication no",
        "  KbdInteractiveAuthentication no",
        f"  UserKnownHostsFile {known_hosts}",
        "  GlobalKnownHostsFile /dev/null",
        *(f"  {line}" for line in extra),
    ]
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _keygen(path: Path, comment: str) -> str:
    """An ed25519 key pair at `path` (no passphrase); the public key's text."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


def _last_line(stderr: bytes) -> str:
    lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "no output"
    kept = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept) or "no output"


def start_sshd(folder: Path) -> SshServer:
    """A running server whose keys, configs and log live in `folder` (see the module
    docstring); SshdUnavailable saying why when there is none."""
    missing = [p for p in ("ssh", "ssh-keygen") if shutil.which(p) is None]
    if not os.access(SSHD, os.X_OK):
        missing.insert(0, SSHD)
    if missing:
        raise SshdUnavailable(
            f"no {', '.join(missing)} (Debian: apt-get install openssh-server openssh-client)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    user = pwd.getpwuid(os.geteuid()).pw_name
    if os.geteuid() == 0:  # the privilege-separation folder sshd insists on as root
        try:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        except OSError as exc:
            raise SshdUnavailable(f"cannot create /run/sshd: {exc}") from None
    try:
        host_pub = _keygen(folder / "host_ed25519", "mos-search-test-host")
        user_pub = _keygen(folder / "user_ed25519", "mos-search-test-user")
    except subprocess.CalledProcessError as exc:
        raise SshdUnavailable(f"ssh-keygen failed: {exc.stderr.decode(errors='replace')}") from None
    (folder / "authorized_keys").write_text(user_pub + "\n")
    identity = folder / "user_ed25519"
    known_hosts = folder / "known_hosts"
    log = folder / "sshd.log"
    problem = "did not start"
    for _attempt in range(3):  # another process may take the free port before sshd binds it
        port = _free_port()
        host_key_line = f"[{HOST}]:{port} {' '.join(host_pub.split()[:2])}"
        known_hosts.write_text(host_key_line + "\n")
        config = folder / "ssh_config"
        config.write_text(_client_config(identity, known_hosts))
        server_config = folder / "sshd_config"
        server_config.write_text(
            "\n".join(
                [
                    f"ListenAddress {HOST}:{port}",
                    f"HostKey {folder / 'host_ed25519'}",
                    f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                    f"PidFile {folder / 'sshd.pid'}",
                    f"AllowUsers {user}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",
                    "UsePAM no",
                    "X11Forwarding no",
                    "PrintMotd no",
                    "MaxStartups 50",
                    "LogLevel INFO",
                ]
            )
            + "\n"
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(server_config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = SshServer(
            port, user, folder, config, known_hosts, host_key_line, identity, process, log
        )
        problem = _wait_ready(server)
        if problem is None:
            return server
        server.stop()
        if "Address already in use" not in _tail(log):
            break
    raise SshdUnavailable(f"sshd {problem}: {_tail(log)}")


def _wait_ready(server: SshServer) -> str | None:
    """None once `ssh ... true` succeeds; else what went wrong."""
    argv = ["ssh", "-F", str(server.config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]
    argv += ["-p", str(server.port), "-l", server.user, "--", HOST, "true"]
    deadline = time.monotonic() + READY_S
    last = "no attempt"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"exited with code {server.process.returncode}"
        done = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL)
        if done.returncode == 0:
            return None
        last = _last_line(done.stderr)
        time.sleep(0.2)
    return f"did not accept `ssh {server.user}@{HOST} true` within {READY_S:.0f} s ({last})"
