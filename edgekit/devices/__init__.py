"""Connection kinds of targets: the registry. A kind (``local``, ``ssh``) is one module with one
``Device`` subclass (``edgekit/devices/base.py``) whose class attributes and classmethods are its
facts: its profile keys, its command-line options, how it is built; registering it is one line
below. Target profiles name it with ``connect = "..."``; ``Target``, recipes and the CLI only pass
its values along (``resolve``, ``build``, ``options``).
"""

from __future__ import annotations

import importlib

from edgekit.devices.base import Device, Option
from edgekit.errors import UsageError
from edgekit.registry import Registry

CONNECTIONS: Registry[type[Device]] = Registry("connection kind")


def register(where: str | type[Device]) -> type[Device]:
    """Register the ``Device`` subclass at ``"package.module:ClassName"`` under its ``connect``."""
    cls = where
    if isinstance(where, str):
        module, _, attr = where.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Device) and cls.connect):
        raise TypeError(f"{where} is not a Device subclass with a connect name")
    return CONNECTIONS.register(cls.connect, cls)


# The registration lines.
register("edgekit.devices.local:LocalDevice")
register("edgekit.devices.ssh:SSHDevice")
register("edgekit.devices.mcu:MCUDevice")
register("edgekit.devices.mcu:EthosUDevice")


def connection(connect: str) -> type[Device]:
    return CONNECTIONS.get(connect)


def options() -> list[tuple[Option, str]]:
    """Every kind's command-line options once, with the labels of the kinds that take it;
    the kinds of other machines first, in registration order."""
    kinds = sorted((cls for _, cls in CONNECTIONS.items()), key=lambda cls: cls.this_machine)
    found: dict[str, tuple[Option, list[str]]] = {}
    for cls in kinds:
        for option in cls.options:
            found.setdefault(option.key, (option, []))[1].append(cls.label)
    return [(option, ", ".join(label for label in labels if label)) for option, labels in found.values()]


def resolve(target, overrides: dict | None = None) -> dict:
    """The target's connection values with the command line's (or a recipe's) options in; an option
    its kind does not take is refused in one line."""
    kind = connection(target.connect)
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    mine = {option.key for option in kind.options}
    for key in given:
        if key not in mine:
            flag, labels = next(((o.flag, labels) for o, labels in options() if o.key == key),
                                ("--" + key.replace("_", "-"), "other"))
            how = kind.how or f"connects with {kind.connect}"
            raise UsageError(f"{flag} is for {labels} targets; {target.name} {how}",
                             hint=f"leave out {flag}, or pick a {labels} target (`edgekit targets` "
                             "lists them)")
    values = {**target.connection, **given}
    if given:
        kind.check_profile(values, "the command line")
    return values


def build(target, overrides: dict | None = None) -> Device:
    """The device that runs ``target``'s work, with the command line's options in."""
    return connection(target.connect).from_values(target, resolve(target, overrides))


def given_address(target, overrides: dict | None = None) -> str | None:
    """The command line's value of the key that names the device (``address_key``), or None."""
    key = connection(target.connect).address_key
    return (overrides or {}).get(key) if key else None
