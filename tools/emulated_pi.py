"""A Raspberry Pi without a Pi: an arm64 Debian under QEMU user-mode emulation, reached by SSH.

    python3 tools/emulated_pi.py build     # the root file system (cached; minutes the first time)
    python3 tools/emulated_pi.py start     # OpenSSH inside it on 127.0.0.1:2222 (background)
    python3 tools/emulated_pi.py stop
    edgekit bench RUN --target raspberrypi-emulated

`make emulated-pi` does the first two. The root file system is Debian 12 (bookworm) for arm64 from
Debian's own packages (debootstrap), with Python 3.11 and OpenSSH; the runtimes a Pi really uses
are installed from their aarch64 wheels on PyPI into two environments, each behind a small
wrapper that sets PYTHONPATH:

- /usr/local/bin/python3-litert: numpy 2, ai-edge-litert, onnxruntime and openvino (pins from
  requirements/constraints.txt, the same versions as on this machine);
- /usr/local/bin/python3-tflite214: numpy < 2 and tflite-runtime 2.14, what many Pis still run.

Every aarch64 program in it runs under qemu-aarch64 through the kernel's binfmt_misc, so the
artefacts run on the ARM kernels of each runtime (XNNPACK's NEON paths, onnxruntime's ARM
MLAS), but at emulation speed: its figures are functional evidence, never latency.

Needs Linux, root (chroot, mounts), debootstrap and qemu-user-static 8 or newer with binfmt_misc
(Debian 12: apt install debootstrap binfmt-support and -t bookworm-backports qemu-user-static;
7.2 crashes inside onnxruntime and OpenVINO), and Debian's mirror and PyPI the first time.
``why_not()`` says in one line what is missing. ExecuTorch is not installed: its Python runtime
needs torch, and PyPI's aarch64 torch 2.13 is a CUDA build of several GB.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = "bookworm"
MIRROR = os.environ.get("EDGEKIT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBS = ["python3", "openssh-server"]


def _device_packages() -> list[str]:
    """What the registered formats say a board installs to run them (``Format.device_packages``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from edgekit.formats import FORMATS

    return sorted({p for _, cls in FORMATS.items() for p in cls.device_packages})


ENVS = {  # wrapper name -> requirements (constrained by requirements/constraints.txt where pinned)
    "python3-litert": ["numpy", *_device_packages()],
    "python3-tflite214": ["numpy<2", "tflite-runtime==2.14.0"],
}
PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{v}_aarch64"
                                          for v in (17, 24, 26, 27, 28, 31, 34, 35, 36)]
DEFAULT_PORT = int(os.environ.get("EDGEKIT_EMULATED_PI_PORT", "2222"))
SESSION = "/etc/edgekit-emulated"  # inside the root file system: sshd's config and keys


def cache_dir() -> Path:
    base = os.environ.get("EDGEKIT_EMULATED_PI_CACHE")
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "edgekit" / "emulated-pi"


def recipe_key() -> str:
    """What the root file system is made of; a change makes a new one (the old one is removed)."""
    text = "\n".join([SUITE, *DEBS, *(f"{k}={v}" for k, v in sorted(ENVS.items())), *PLATFORMS,
                      _constraints().read_text() if _constraints().is_file() else ""])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _constraints() -> Path:
    return REPO / "requirements" / "constraints.txt"


def rootfs() -> Path:
    return cache_dir() / f"rootfs-{recipe_key()}"


# ---------------------------------------------------------------- can this machine do it?


def binfmt_ready() -> bool:
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    return entry.is_file() and entry.read_text().startswith("enabled")


def enable_binfmt() -> None:
    """Mount binfmt_misc and register qemu-aarch64 where Debian's binfmt-support can (root)."""
    if binfmt_ready() or os.geteuid() != 0:
        return
    if not Path("/proc/sys/fs/binfmt_misc/register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"],
                       capture_output=True)
    if shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    # qemu-user-static 10 (bookworm-backports) ships a systemd binfmt.d entry and none for
    # binfmt-support; with no systemd to read it, write its line to the kernel ourselves.
    conf = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
    if not binfmt_ready() and conf.is_file():
        line = next((x for x in conf.read_text().splitlines() if x.startswith(":qemu-aarch64:")), None)
        if line:
            try:
                Path("/proc/sys/fs/binfmt_misc/register").write_text(line)
            except OSError:
                pass


def why_not(need_build: bool = True) -> str | None:
    """One line saying why this machine cannot run the emulated Pi, or None when it can."""
    if sys.platform != "linux":
        return "the emulated Pi needs Linux (chroot, binfmt_misc)"
    if os.geteuid() != 0:
        return "the emulated Pi needs root (chroot and mounts); run as root or use a real Pi"
    if platform_machine() == "aarch64":
        return None if shutil.which("sshd") or Path("/usr/sbin/sshd").exists() else "no sshd"
    missing = [t for t in ("qemu-aarch64-static", "unshare", "chroot") if not shutil.which(t)]
    if not missing and qemu_major() < 8:
        return (f"qemu-user-static {qemu_major()}.x crashes in onnxruntime and OpenVINO on arm64; "
                "install 8 or newer (Debian 12: apt install -t bookworm-backports qemu-user-static)")
    if need_build and not (rootfs() / ".edgekit-ready").is_file() and not shutil.which("debootstrap"):
        missing.append("debootstrap")
    if missing:
        return (f"{', '.join(missing)} not installed: apt install debootstrap qemu-user-static "
                "binfmt-support util-linux")
    enable_binfmt()
    if not binfmt_ready():
        return ("binfmt_misc has no enabled qemu-aarch64 entry (mount binfmt_misc and run "
                "`update-binfmts --enable qemu-aarch64`)")
    return None


def qemu_major() -> int:
    done = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True)
    words = done.stdout.split()
    try:
        return int(words[words.index("version") + 1].split(".")[0])
    except (ValueError, IndexError):
        return 0


def platform_machine() -> str:
    return os.uname().machine


# ---------------------------------------------------------------- build


def build(log=print) -> Path:
    """The cached root file system, built first if needed (into a temporary sibling, then renamed)."""
    final = rootfs()
    if (final / ".edgekit-ready").is_file():
        return final
    why = why_not()
    if why:
        raise RuntimeError(why)
    cache_dir().mkdir(parents=True, exist_ok=True)
    for old in cache_dir().glob("rootfs-*"):  # an older recipe, or a build that was cut off
        shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="rootfs-building-", dir=cache_dir()))
    try:
        target = work / "root"
        log(f"debootstrap {SUITE} arm64 into {target} (several minutes under QEMU) ...")
        started = time.monotonic()
        done = subprocess.run(["debootstrap", "--arch=arm64", "--variant=minbase",
                               f"--include={','.join(DEBS)}", SUITE, str(target), MIRROR],
                              capture_output=True, text=True)
        if done.returncode != 0:
            tail = " | ".join(done.stdout.strip().splitlines()[-3:] + done.stderr.strip().splitlines()[-3:])
            raise RuntimeError(f"debootstrap failed: {tail}")
        log(f"  debootstrap took {time.monotonic() - started:.0f} s")
        for name, requirements in ENVS.items():
            install_env(target, name, requirements, log)
        (target / "run" / "sshd").mkdir(parents=True, exist_ok=True)
        (target / ".edgekit-ready").write_text(recipe_key() + "\n")
        os.replace(target, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def install_env(root: Path, name: str, requirements: list[str], log=print) -> None:
    """aarch64 wheels from PyPI, installed by this machine's pip into /opt/edgekit/<name>."""
    site = root / "opt" / "edgekit" / name
    log(f"  {name}: {' '.join(requirements)}")
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--only-binary=:all:",
               "--target", str(site), "--python-version", "3.11", "--implementation", "cp",
               *(f"--platform={p}" for p in PLATFORMS), *requirements]
    if _constraints().is_file() and not any(r.startswith("numpy<") for r in requirements):
        command[4:4] = ["-c", str(_constraints())]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pip could not install {name} for aarch64: "
                           f"{' | '.join(done.stderr.strip().splitlines()[-2:])}")
    wrapper = root / "usr" / "local" / "bin" / name
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH=/opt/edgekit/{name} exec /usr/bin/python3 "$@"\n')
    wrapper.chmod(0o755)


# ---------------------------------------------------------------- run sshd inside


def _keygen(path: Path) -> None:
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgekit-emulated-pi",
                        "-f", str(path)], check=True)


def start(port: int = DEFAULT_PORT, client_dir: Path | None = None, foreground: bool = False):
    """Start OpenSSH inside the root file system on 127.0.0.1:port; return (process or None, client
    folder). The client folder holds id_client, known_hosts (the server's key) and ssh_config."""
    root = build()
    client = Path(client_dir) if client_dir else cache_dir() / "client"
    client.mkdir(parents=True, exist_ok=True)
    os.chmod(client, 0o700)
    _keygen(client / "id_client")
    _keygen(cache_dir() / "host_key")  # kept beside the cache, so known_hosts stays true
    session = root / SESSION.lstrip("/") / str(port)
    session.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "host_key.pub"):
        shutil.copy2(cache_dir() / name, session / name)
    os.chmod(session / "host_key", 0o600)
    (session / "authorized_keys").write_text((client / "id_client.pub").read_text())
    inside = f"{SESSION}/{port}"
    (session / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {inside}/host_key\nPidFile {inside}/sshd.pid\n"
        f"AuthorizedKeysFile {inside}/authorized_keys\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
        "UseDNS no\nLoginGraceTime 60\n"
    )
    host_pub = (cache_dir() / "host_key.pub").read_text().split()
    (client / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    (client / "ssh_config").write_text(
        "Host 127.0.0.1\n"
        f"  IdentityFile {client / 'id_client'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {client / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
    )
    # A private mount namespace: /proc, /sys and /dev are mounted for the chroot only, and vanish
    # with it. OpenVINO's CPU plugin needs /sys (hwloc's topology) or it crashes under QEMU; /proc
    # with its binfmt_misc lets the runner see that it is emulated.
    script = ('mount --rbind /proc "$1/proc" && mount --rbind /sys "$1/sys" && '
              'mount --rbind /dev "$1/dev" && '
              f'exec chroot "$1" /usr/sbin/sshd -D -e -f {inside}/sshd_config')
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(root)]
    log = open(session / "sshd.log", "w")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    (cache_dir() / f"sshd-{port}.pid").write_text(f"{process.pid}\n")
    _wait_listening(port, process, session / "sshd.log")
    if foreground:
        process.wait()
    return process, client


def _wait_listening(port: int, process: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd in the emulated Pi exited: {log.read_text().strip()[-300:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    stop_process(process)
    raise RuntimeError(f"sshd in the emulated Pi did not listen on port {port} within {seconds:.0f} s")


def stop_process(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def stop(port: int = DEFAULT_PORT) -> bool:
    pidfile = cache_dir() / f"sshd-{port}.pid"
    if not pidfile.is_file():
        return False
    pid = int(pidfile.read_text())
    pidfile.unlink()
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("build", "start", "stop", "status"):
        print(__doc__.split("\n\n")[1])
        return 2
    action = argv[1]
    try:
        if action == "build":
            print(build())
        elif action == "start":
            stop(DEFAULT_PORT)
            _, client = start(DEFAULT_PORT)
            print(f"emulated Pi: root@127.0.0.1:{DEFAULT_PORT} (ssh -F {client / 'ssh_config'} -p "
                  f"{DEFAULT_PORT} root@127.0.0.1); bench with --target raspberrypi-emulated")
        elif action == "stop":
            print("stopped" if stop(DEFAULT_PORT) else "not running")
        else:
            why = why_not()
            print(why or f"ready: {rootfs()}" if (rootfs() / ".edgekit-ready").is_file() else "can build")
    except RuntimeError as exc:
        print(f"emulated_pi: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
