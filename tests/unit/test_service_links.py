"""Kubernetes service links: a Service named ``dsp`` or ``dsp-...`` in the worker's namespace
must not stop the worker; a misspelt setting still must."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from processor.errors import ConfigError
from processor.settings import load_settings
from processor.settings.service_links import is_service_link

from .test_settings import VALID


def kubelet_variables(
    name: str, cluster_ip: str, ports: list[tuple[str, int, str]]
) -> dict[str, str]:
    """What the kubelet injects for one Service (pkg/kubelet/envvars: FromServices and
    makeLinkVariables): host, first port, every named port, then Docker link variables."""
    prefix = name.upper().replace("-", "_")
    host = f"[{cluster_ip}]" if ":" in cluster_ip else cluster_ip  # net.JoinHostPort
    env = {f"{prefix}_SERVICE_HOST": cluster_ip, f"{prefix}_SERVICE_PORT": str(ports[0][1])}
    for port_name, port, _ in ports:
        if port_name:
            env[f"{prefix}_SERVICE_PORT_{port_name.upper().replace('-', '_')}"] = str(port)
    for i, (_, port, protocol) in enumerate(ports):
        url = f"{protocol.lower()}://{host}:{port}"
        if i == 0:
            env[f"{prefix}_PORT"] = url
        link = f"{prefix}_PORT_{port}_{protocol.upper()}"
        env[link] = url
        env[f"{link}_PROTO"] = protocol.lower()
        env[f"{link}_PORT"] = str(port)
        env[f"{link}_ADDR"] = cluster_ip
    return env


#: Services a namespace running dsp may well have: the worker's own (for a ServiceMonitor),
#: one named like a settings section, an IPv6 one, one with UDP and SCTP ports
SERVICES = {
    **kubelet_variables("dsp", "10.96.0.12", [("metrics", 9100, "TCP"), ("dns-udp", 53, "UDP")]),
    **kubelet_variables(
        "dsp-worker", "10.96.0.13", [("http-metrics", 9100, "TCP"), ("diameter", 3868, "SCTP")]
    ),
    **kubelet_variables("dsp-stream", "10.96.0.14", [("", 8080, "TCP")]),
    **kubelet_variables("dsp-v6", "fd00:10:96::15", [("web", 443, "TCP")]),
}


def test_the_kubelet_variables_cover_every_form() -> None:
    """The fixture holds each form the kubelet writes (so the test below sees them all)."""
    names = set(SERVICES)
    assert {"DSP_SERVICE_HOST", "DSP_SERVICE_PORT", "DSP_SERVICE_PORT_METRICS", "DSP_PORT"} <= names
    assert {"DSP_WORKER_PORT_3868_SCTP_PROTO", "DSP_PORT_53_UDP_ADDR"} <= names
    assert {"DSP_WORKER_SERVICE_PORT_HTTP_METRICS", "DSP_V6_PORT_443_TCP"} <= names


def test_service_links_are_skipped_and_reported(tmp_path: Path) -> None:
    """Every variable the kubelet injects for Services named dsp, dsp-worker, dsp-stream and
    dsp-v6 is skipped, and the settings say which were."""
    config = tmp_path / "dsp.toml"
    config.write_text(VALID)
    settings = load_settings(config, environ={**SERVICES, "DSP_BATCH__MAX_RETRIES": "5"})
    assert settings.batch.max_retries == 5
    assert set(settings.ignored_variables) == set(SERVICES)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DSP_STREEM__TABLE", "orders"),  # a misspelt section
        ("DSP_WORKER_SERVICE_HOST", "orders"),  # a service-link name, but not its value
        ("DSP_WORKER_SERVICE_PORT", "http"),
        ("DSP_PORT", "https://10.96.0.12:9100"),
        ("DSP_PORT_9100_TCP", "tcp://10.96.0.12:9101"),  # the port in the name is not the URL's
        ("DSP_PORT_9100_TCP_PROTO", "udp"),
        ("DSP_PORT_9100_TCP_ADDR", "cache"),
        ("DSP_PORT_9100_HTTP", "tcp://10.96.0.12:9100"),  # not a protocol
        ("dsp_service_host", "10.96.0.12"),  # the kubelet writes upper case
    ],
)
def test_anything_else_is_still_refused(tmp_path: Path, name: str, value: str) -> None:
    """Only the kubelet's exact forms are skipped: other unknown DSP_ variables stop the start."""
    assert not is_service_link(name, value)
    config = tmp_path / "dsp.toml"
    config.write_text(VALID)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={**SERVICES, name: value})
    assert caught.value.key == name


def test_dsp_starts_in_a_pod_beside_a_service_named_dsp_worker(tmp_path: Path) -> None:
    """`dsp check-config` with the service links of `dsp` and `dsp-worker` in its environment
    exits 0 and says at DEBUG what it skipped; a misspelt setting still exits 2."""
    config = tmp_path / "dsp.toml"
    config.write_text(VALID)
    command = [sys.executable, "-m", "processor.cli", "check-config", "--offline", "--config"]
    done = subprocess.run(
        [*command, str(config), "--log-level", "DEBUG", "--log-format", "json"],
        env={"PATH": "/usr/bin:/bin", **SERVICES},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count('"kubernetes_service_link_ignored"') == len(SERVICES)
    assert '"variable": "DSP_WORKER_SERVICE_HOST"' in done.stderr
    misspelt = subprocess.run(
        [*command, str(config)],
        env={"PATH": "/usr/bin:/bin", **SERVICES, "DSP_STREEM__TABLE": "orders"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert misspelt.returncode == 2
    assert "DSP_STREEM__TABLE" in misspelt.stderr
