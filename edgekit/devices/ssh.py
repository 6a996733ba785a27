"""Run the benchmark runner on a device over SSH, with the system OpenSSH client.

Using ``ssh``/``scp`` themselves means ~/.ssh/config, keys, agents, ProxyJump and known_hosts
work as they do in the user's shell. edgekit never turns host-key checking off: BatchMode makes
an unknown or changed host key an error instead of a prompt. Every word of every remote command
goes through shlex.quote.

Per check, and first per bench: one ``ssh`` runs the probe (``edgekit/compat/probe.py``, on
stdin), which says which runtimes the device has. Per bench: one ``ssh`` creates a private
temporary folder on the device (mktemp -d), one ``scp -r`` copies runner.py and the model files
into it, one ``ssh`` per model file runs the runner in a
fresh process (the spec goes in on stdin), and a last ``ssh`` removes the folder.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgekit.devices.base import PROBE, RUNNER, Device, Key, Option, parse_probe, parse_result
from edgekit.errors import DeviceError, UsageError

CONNECT_TIMEOUT_S = 10
_BASE_OPTIONS = [
    "BatchMode=yes",  # never prompt: a password or an unknown host key is an error
    f"ConnectTimeout={CONNECT_TIMEOUT_S}",
    "ServerAliveInterval=5",  # notice a dropped connection within about 15 s
    "ServerAliveCountMax=3",
]


def split_host(host: str) -> tuple[str, int | None]:
    """``[user@]addr[:port]``, ``[user@][v6addr]:port`` or an ssh alias -> (destination, port)."""
    host = host.strip()
    if not host or host.startswith("-") or any(c.isspace() for c in host):
        raise UsageError(f"--host {host!r} is not a host",
                         hint="pass USER@ADDR, USER@ADDR:PORT or an ssh alias")
    m = re.fullmatch(r"(?:(?P<user>[^@]+)@)?\[(?P<v6>[0-9A-Fa-f:.%\w]+)\](?::(?P<port>\d+))?", host)
    if m:
        dest = (f"{m['user']}@" if m["user"] else "") + m["v6"]
        return dest, int(m["port"]) if m["port"] else None
    user, at, rest = host.rpartition("@")
    if rest.count(":") == 1:
        addr, _, port = rest.partition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"--host {host!r} has a bad port {port!r}")
        return f"{user}{at}{addr}", int(port)
    return host, None


def remote_words(words: list[str]) -> str:
    """A remote command line, every word quoted; a leading ~/ becomes "$HOME"/ so it still expands."""
    out = []
    for word in words:
        if word.startswith("~/"):
            out.append('"$HOME"/' + shlex.quote(word[2:]))
        else:
            out.append(shlex.quote(word))
    return " ".join(out)


_INSECURE = {"stricthostkeychecking": {"no", "off", "false"}, "userknownhostsfile": {"/dev/null"},
             "globalknownhostsfile": {"/dev/null"}}


def check_ssh_options(options: list[str], where: str) -> None:
    """Refuse options that turn host-key checking off: edgekit never does that."""
    import re

    for option in options:
        # ssh_config syntax: Key=Value, Key Value or Key = Value, whitespace of any kind, quotes
        parts = re.split(r"\s*=\s*|\s+", option.strip(), maxsplit=1)
        key = parts[0].lower()
        value = parts[1].strip().strip("\"'").strip().lower() if len(parts) > 1 else ""
        if value in _INSECURE.get(key, set()):
            raise UsageError(
                f"{where}: ssh option {option!r} turns host-key checking off, which edgekit refuses",
                hint="add the device's key to known_hosts instead: ssh-keyscan HOST >> ~/.ssh/known_hosts, "
                "after checking its fingerprint",
            )


class SSHDevice(Device):
    connect = "ssh"
    label = "SSH"
    how = "is reached over SSH"
    keys = (
        Key("host"),  # [user@]addr[:port] or an ~/.ssh/config alias
        Key("port", int),  # when the host names none
        Key("python", default="python3"),  # the device's interpreter that runs the runner
        Key("ssh_config", path=True),  # an ssh_config file (ssh -F)
        Key("ssh_options", list, ()),  # extra "-o Key=Value" for ssh and scp
    )
    options = (
        Option("host", "USER@ADDR[:PORT] or an ~/.ssh/config alias (overrides the profile)."),
        Option("python", "the device's Python 3 (python3 by default)."),
        Option("ssh_config", "an ssh_config file (ssh -F).", path=True),
    )
    address_key = "host"

    @classmethod
    def check_profile(cls, values: dict, where: str) -> None:
        port = values.get("port")
        if port is not None and not 0 < port < 65536:
            raise UsageError(f"{where}: port must be 1 to 65535, got {port}")
        check_ssh_options(values.get("ssh_options", []), where)

    @classmethod
    def from_values(cls, target, values: dict) -> SSHDevice:
        if not values.get("host"):
            raise UsageError(f"target {target.name} needs --host USER@ADDR")
        return cls(values["host"], values.get("python") or "python3", values.get("ssh_config"),
                   values.get("ssh_options"), port=values.get("port"))

    def __init__(self, host: str, python: str = "python3", ssh_config: Path | str | None = None,
                 options: list[str] | None = None, port: int | None = None):
        self.dest, self.port = split_host(host)
        if self.port is None:
            self.port = port
        self.host = host
        self.name = host
        self.python = python
        self.config = Path(ssh_config).expanduser() if ssh_config else None
        if self.config is not None and not self.config.is_file():
            raise UsageError(f"--ssh-config {self.config} does not exist")
        self.options = list(options or [])
        check_ssh_options(self.options, "ssh_options")
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise DeviceError(f"{tool} is not installed here",
                                  hint="install the OpenSSH client (apt install openssh-client)")
        self.remote_dir: str | None = None

    # ------------------------------------------------------------ commands

    def _common(self, port_flag: str) -> list[str]:
        args = []
        if self.config is not None:
            args += ["-F", str(self.config)]
        for option in _BASE_OPTIONS + self.options:
            args += ["-o", option]
        if self.port is not None:
            args += [port_flag, str(self.port)]
        return args

    def ssh_command(self, words: list[str]) -> list[str]:
        return ["ssh", *self._common("-p"), "--", self.dest, remote_words(words)]

    def _ssh(self, words: list[str], what: str, stdin: str | None = None, timeout: float = 120,
             shell: str | None = None) -> subprocess.CompletedProcess:
        command = self.ssh_command(words)
        if shell is not None:  # a fixed script of ours; its variable parts are quoted by the caller
            command[-1] = shell
        try:
            done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.host} did not answer within {timeout:.0f} s while {what}") from None
        if done.returncode == 255:
            raise DeviceError(self.explain(done.stderr, what))
        return done

    def explain(self, stderr: str, what: str) -> str:
        """One line for a failed ssh/scp, from OpenSSH's own message."""
        text = " ".join(stderr.split())
        low = text.lower()
        host = self.host
        if "host key verification failed" in low or "remote host identification has changed" in low:
            return (f"the host key of {host} is unknown or has changed, so edgekit will not connect "
                    f"(host-key checking stays on); check its fingerprint and add it with "
                    f"`ssh-keyscan` to known_hosts, or connect once with `ssh {host}`")
        if "permission denied" in low or "too many authentication failures" in low:
            return (f"{host} refused the login ({_last(text)}); check the user name and that your key "
                    "is in the device's ~/.ssh/authorized_keys (ssh-copy-id), or load it into ssh-agent")
        for marker in ("could not resolve hostname", "connection refused", "no route to host",
                       "connection timed out", "operation timed out", "network is unreachable"):
            if marker in low:
                return (f"cannot reach {host} while {what}: {_last(text)}; check the address, the port "
                        "and that the device is on and runs an SSH server")
        if any(m in low for m in ("closed by remote host", "broken pipe", "connection reset",
                                  "timeout, server", "not responding", "connection closed",
                                  "lost connection")):
            return (f"lost the connection to {host} while {what} ({_last(text)}); the run directory "
                    f"is unchanged" + (f", and {self.remote_dir} may be left on the device"
                                       if self.remote_dir else ""))
        return f"ssh to {host} failed while {what}: {_last(text) or 'no message (exit 255)'}"

    # ------------------------------------------------------------ Device

    def stage(self, files: dict[str, list[Path]]) -> dict[str, str]:
        done = self._ssh([], "creating a temporary folder", shell="mktemp -d -t edgekit-bench.XXXXXXXX")
        folder = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        if done.returncode != 0 or not folder.startswith("/"):
            raise DeviceError(f"could not create a temporary folder on {self.host}: "
                              f"{_last(done.stderr) or done.stdout.strip() or 'mktemp failed'}")
        self.remote_dir = folder
        with tempfile.TemporaryDirectory(prefix="edgekit-stage-") as tmp:
            stage = Path(tmp) / "bench"
            stage.mkdir()
            shutil.copy2(RUNNER, stage / "runner.py")
            remote = {}
            for i, (key, paths) in enumerate(files.items()):
                sub = stage / str(i)
                sub.mkdir()
                for path in paths:
                    _link_or_copy(Path(path), sub / Path(path).name)
                remote[key] = f"{folder}/bench/{i}/{Path(paths[0]).name}"
            command = ["scp", "-q", "-r", *self._common("-P"), str(stage), f"{self._scp_dest()}:{folder}/"]
            try:
                copied = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            except subprocess.TimeoutExpired:
                raise DeviceError(f"copying the model files to {self.host} took over 30 minutes") from None
            if copied.returncode != 0:
                raise DeviceError(self.explain(copied.stderr, "copying the model files"))
        return remote

    def _scp_dest(self) -> str:
        return f"[{self.dest}]" if ":" in self.dest.rpartition("@")[2] else self.dest

    def run(self, spec: dict, timeout: float) -> dict:
        words = ["cd", f"{self.remote_dir}/bench"]
        # "; exit $?": the shell waits for the runner, so a runner killed by a signal (a runtime's
        # segfault) ends as exit status 128+N, not as ssh's own 255 (a lost connection).
        command = remote_words(words) + " && " + remote_words([self.python, "runner.py", "-"]) + "; exit $?"
        done = self._ssh([], f"running {Path(spec['path']).name}", stdin=json.dumps(spec),
                         timeout=timeout, shell=command)
        result = parse_result(done.stdout, done.stderr, done.returncode, self.host)
        if result.get("kind") == "crashed" and done.returncode == 127:
            result.update(kind="no_runtime", error=f"{self.python} was not found on {self.host}; "
                          "pass --python with the device's Python 3 (one with numpy and a runtime)")
        return result

    def probe(self, args: list[str] = (), timeout: float = 120) -> dict:
        """One ``ssh ... PYTHON - ARGS`` with the probe script on stdin; nothing is copied."""
        done = self._ssh([self.python, "-", *args], "asking the device for its runtimes",
                         stdin=PROBE.read_text(), timeout=timeout)
        return parse_probe(done.stdout, done.stderr, done.returncode, self.host, self.python)

    def close(self) -> None:
        if self.remote_dir is None:
            return
        folder, self.remote_dir = self.remote_dir, None
        try:
            self._ssh(["rm", "-rf", "--", folder], "cleaning up", timeout=60)
        except DeviceError:
            pass  # the results are in; a folder left in the device's /tmp is not worth failing for


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        dst.symlink_to(src.resolve())  # scp -r copies what a link points to
    except OSError:
        shutil.copy2(src, dst)


def _last(text: str) -> str:
    """OpenSSH's last message line, without the noise of warnings before it."""
    parts = [p.strip() for p in re.split(r"(?<=[.\r\n])\s+(?=[A-Za-z])", text) if p.strip()]
    return parts[-1].rstrip(".") if parts else ""
