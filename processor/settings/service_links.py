"""Kubernetes service links: the variables the kubelet injects for every Service.

For a Service ``dsp-worker`` (name upper-cased, ``-`` turned into ``_``) with cluster IP
10.96.0.12 and a port 9100/TCP named ``metrics``, every pod in the namespace gets::

    DSP_WORKER_SERVICE_HOST=10.96.0.12
    DSP_WORKER_SERVICE_PORT=9100                 (the first port)
    DSP_WORKER_SERVICE_PORT_METRICS=9100         (each named port)
    DSP_WORKER_PORT=tcp://10.96.0.12:9100        (Docker links: the first port)
    DSP_WORKER_PORT_9100_TCP=tcp://10.96.0.12:9100
    DSP_WORKER_PORT_9100_TCP_PROTO=tcp
    DSP_WORKER_PORT_9100_TCP_PORT=9100
    DSP_WORKER_PORT_9100_TCP_ADDR=10.96.0.12

(the kubelet's ``envvars.FromServices`` and ``makeLinkVariables``). A Service named ``dsp``
or ``dsp-...`` therefore puts ``DSP_`` variables into the worker's environment that are not
settings. The loader skips exactly these: the name must have one of the forms above *and* the
value the kubelet would give it, so a misspelt setting is still refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

__all__ = ["is_service_link"]

_PROTOCOLS = ("tcp", "udp", "sctp")
_SERVICE = r"[A-Z0-9_]+"
_PORT_N = r"PORT_(?P<port>\d{1,5})_(?P<proto>TCP|UDP|SCTP)"


def _ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _port(value: str) -> bool:
    return value.isascii() and value.isdigit() and 0 < int(value) < 65536


_URL = re.compile(
    r"^(?P<proto>tcp|udp|sctp)://(?:\[(?P<ip6>[0-9A-Fa-f:.]+)\]|(?P<ip4>[0-9.]+)):(?P<port>\d{1,5})$"
)


def _url(value: str, port: str | None = None, proto: str | None = None) -> bool:
    found = _URL.match(value)
    if found is None or not _ip(found["ip6"] or found["ip4"]) or not _port(found["port"]):
        return False
    if port is not None and int(found["port"]) != int(port):
        return False
    return proto is None or found["proto"] == proto.lower()


#: each form of a service-link name, with the check of its value
_FORMS: tuple[tuple[re.Pattern[str], Callable[[str, re.Match[str]], bool]], ...] = (
    (re.compile(rf"^{_SERVICE}_SERVICE_HOST$"), lambda v, _m: _ip(v)),
    (re.compile(rf"^{_SERVICE}_SERVICE_PORT(?:_{_SERVICE})?$"), lambda v, _m: _port(v)),
    (re.compile(rf"^{_SERVICE}_PORT$"), lambda v, _m: _url(v)),
    (re.compile(rf"^{_SERVICE}_{_PORT_N}$"), lambda v, m: _url(v, m["port"], m["proto"])),
    (re.compile(rf"^{_SERVICE}_{_PORT_N}_PROTO$"), lambda v, m: v == m["proto"].lower()),
    (re.compile(rf"^{_SERVICE}_{_PORT_N}_PORT$"), lambda v, m: v == str(int(m["port"]))),
    (re.compile(rf"^{_SERVICE}_{_PORT_N}_ADDR$"), lambda v, _m: _ip(v)),
)


def is_service_link(name: str, value: str) -> bool:
    """Whether ``name=value`` is a variable the kubelet injects for a Service."""
    upper = name.upper()
    if upper != name:
        return False  # the kubelet's names are upper case
    for pattern, value_ok in _FORMS:
        found = pattern.match(name)
        if found is not None and value_ok(value, found):
            return True
    return False
