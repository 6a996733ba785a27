"""Connection kinds of targets: the registry. A kind (``local``, ``ssh``) is one module with one
``Device`` subclass (``edgekit/devices/base.py``) whose class attributes and classmethods are its
facts; registering it is one line below. Target profiles name it with ``connect = "..."``.
"""

from __future__ import annotations

import importlib

from edgekit.devices.base import Device
from edgekit.registry import Registry

CONNECTIONS: Registry[type[Device]] = Registry("connection kind")


def register(where: str) -> type[Device]:
    """Register the ``Device`` subclass at ``"package.module:ClassName"`` under its ``connect``."""
    module, _, attr = where.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Device) and cls.connect):
        raise TypeError(f"{where} is not a Device subclass with a connect name")
    return CONNECTIONS.register(cls.connect, cls)


# The registration lines.
register("edgekit.devices.local:LocalDevice")
register("edgekit.devices.ssh:SSHDevice")


def connection(connect: str) -> type[Device]:
    return CONNECTIONS.get(connect)
