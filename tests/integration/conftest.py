"""Fixtures of the integration tests that need more than the CLI: a real OpenSSH server."""

from __future__ import annotations

import os

import pytest

from tests.integration.sshd import find_sshd, start_sshd


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real sshd on 127.0.0.1 with its own host key and client config (tests/integration/sshd.py)."""
    if find_sshd() is None:
        # CI installs openssh-server (Makefile: ssh-server); only a developer's machine can lack it.
        if os.environ.get("EDGEKIT_REQUIRE_SSHD"):
            raise RuntimeError("sshd is not installed, and EDGEKIT_REQUIRE_SSHD is set")
        pytest.skip("OpenSSH server (sshd) not installed: apt install openssh-server")
    srv = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield srv
    srv.stop()
