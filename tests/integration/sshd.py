"""A real OpenSSH server on 127.0.0.1 for the SSH target's tests, with throw-away keys.

The server runs as the current user (root in CI), accepts only the throw-away client key, and the
client side is one ssh_config file (passed with ``--ssh-config``) that names the key and a
known_hosts file holding the server's host key: host-key checking stays on throughout.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/usr/bin/sshd")


def find_sshd() -> str | None:
    for path in SSHD_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("sshd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekit-test", "-f", str(path)],
                   check=True)


@dataclass
class SSHServer:
    folder: Path
    port: int
    user: str
    process: subprocess.Popen
    config: Path  # client ssh_config: key + known_hosts for this server

    @property
    def host(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def client_config(self, name: str, *, key: Path | None = None, known_hosts: Path | None = None) -> Path:
        """Another client config: a different key or known_hosts (to test refusals)."""
        path = self.folder / name
        known_hosts = known_hosts or self.folder / "known_hosts"
        path.write_text(_client_config(key or self.folder / "id_client", known_hosts))
        return path

    def drop_connections(self) -> None:
        """Kill every per-connection sshd child, as a network drop would end them."""
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        for pid in map(int, out.split()):
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _client_config(key: Path, known_hosts: Path) -> str:
    return (
        "Host 127.0.0.1\n"
        f"  IdentityFile {key}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known_hosts}\n"
        "  GlobalKnownHostsFile /dev/null\n"  # only our file: the user's own is not consulted
        "  StrictHostKeyChecking yes\n"
        "  LogLevel ERROR\n"
    )


def start_sshd(folder: Path) -> SSHServer:
    sshd = find_sshd()
    if sshd is None:
        raise FileNotFoundError("sshd")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    keygen(folder / "host_key")
    keygen(folder / "id_client")
    keygen(folder / "id_stranger")  # a key the server does not accept
    (folder / "authorized_keys").write_text((folder / "id_client.pub").read_text())
    port = free_port()
    host_pub = (folder / "host_key.pub").read_text().split()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (folder / "empty_known_hosts").write_text("")
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    (folder / "client_config").write_text(_client_config(folder / "id_client", folder / "known_hosts"))
    process = subprocess.Popen([sshd, "-D", "-e", "-f", str(folder / "sshd_config")],
                               stdout=subprocess.DEVNULL, stderr=open(folder / "sshd.log", "w"))
    server = SSHServer(folder, port, getpass.getuser(), process, folder / "client_config")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError("sshd did not start listening within 10 s")
