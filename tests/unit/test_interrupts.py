"""edgekit.interrupts with real processes and real signals: a stop that Python discards (the signal
lands in a garbage-collection callback, as JAX's did) is delivered again; a worker dies with its
parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

LANDS_IN_GC_CALLBACK = textwrap.dedent("""
    import gc, os, signal, sys, threading, time  # noqa: E401
    from edgekit import interrupts
    from edgekit.errors import Terminated

    busy = threading.Event()

    def callback(phase, info):  # like JAX's _xla_gc_callback: Python code run by the collector
        if phase == "start" and not busy.is_set():
            busy.set()
            os.kill(os.getpid(), signal.SIG{name})
            end = time.monotonic() + 0.5
            while time.monotonic() < end:  # the signal's raise lands here, and is discarded
                pass

    try:
        with interrupts.installed():
            gc.callbacks.append(callback)
            start = time.monotonic()
            while time.monotonic() - start < 20:
                gc.collect()
                time.sleep(0.01)
            print("not stopped")
            sys.exit(0)
    except (KeyboardInterrupt, Terminated) as exc:
        print(f"stopped by {{type(exc).__name__}} after {{time.monotonic() - start:.1f}}s")
        sys.exit(3)
""")


@pytest.mark.parametrize("name", ["TERM", "INT"])
def test_a_stop_discarded_inside_a_gc_callback_is_delivered_again(name):
    done = subprocess.run([sys.executable, "-c", LANDS_IN_GC_CALLBACK.format(name=name)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Exception ignored in" in done.stderr  # the first raise really was discarded
    assert done.stdout.startswith("stopped by"), done.stdout
    assert float(done.stdout.split()[-1].rstrip("s")) < 5  # re-delivered, not after the 20 s loop


SECOND_SIGNAL_DURING_CLEAN_UP = textwrap.dedent("""
    import os, signal, sys, time
    from edgekit import interrupts
    from edgekit.errors import Terminated

    try:
        with interrupts.installed():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:  # the clean-up: a second signal (and the watchdog's) must not cut it short
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1.2)
                print("clean-up finished")
    except Terminated as exc:
        print(f"exit {exc.exit_code}")
""")


def test_a_second_signal_does_not_cut_the_clean_up_short():
    done = subprocess.run([sys.executable, "-c", SECOND_SIGNAL_DURING_CLEAN_UP], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.split("\n")[:2] == ["clean-up finished", "exit 143"], done.stdout + done.stderr


ORPHAN = textwrap.dedent("""
    import multiprocessing, sys, time

    def child():
        from edgekit.interrupts import die_with_parent
        die_with_parent()
        time.sleep(60)

    if __name__ == "__main__":
        p = multiprocessing.get_context("spawn").Process(target=child)
        p.start()
        print(p.pid, flush=True)
        time.sleep(60)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_dies_with_its_parent(tmp_path):
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # the child has called die_with_parent()
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the worker outlived its parent's SIGKILL")
