"""Results parsed into the typed Result, in every shape the spec has had, and bad fields
named."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from runtime.service.cni import DNS, Interface, IPConfig, ResultError, Route, parse_result

CURRENT = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "cni0", "mac": "0a:58:0a:f4:00:01"},
        {"name": "veth1", "mac": "0a:58:0a:f4:00:02"},
        {"name": "eth0", "mac": "0a:58:0a:f4:00:03", "mtu": 1500, "sandbox": "/run/ns/a"},
    ],
    "ips": [{"address": "10.244.0.5/24", "gateway": "10.244.0.1", "interface": 2}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}],
    "dns": {"nameservers": ["10.96.0.10"], "domain": "cluster.local",
            "search": ["svc.cluster.local"], "options": ["ndots:5"]},
}


def test_current_result() -> None:
    r = parse_result(CURRENT)
    assert r.cni_version == "1.0.0"
    assert r.interfaces[2] == Interface(name="eth0", mac="0a:58:0a:f4:00:03", mtu=1500,
                                        sandbox="/run/ns/a")
    assert r.ips == (IPConfig(address=ipaddress.ip_interface("10.244.0.5/24"),
                              gateway=ipaddress.ip_address("10.244.0.1"), interface=2),)
    assert r.routes == (Route(dst=ipaddress.ip_network("0.0.0.0/0"),
                              gw=ipaddress.ip_address("10.244.0.1")),)
    assert r.dns == DNS(nameservers=("10.96.0.10",), domain="cluster.local",
                        search=("svc.cluster.local",), options=("ndots:5",))
    assert r.primary_ip() == ipaddress.ip_address("10.244.0.5")
    assert r.sandbox_ips("/run/ns/a") == list(r.ips)
    assert r.sandbox_ips("/run/ns/other") == []
    assert r.raw is CURRENT  # handed on as prevResult unchanged


def test_040_result_with_version_field_and_ipv6() -> None:
    r = parse_result({"cniVersion": "0.4.0", "interfaces": [{"name": "eth0", "sandbox": "/n"}],
                      "ips": [{"version": "6", "address": "fd00::5/64", "interface": 0}]})
    assert r.ips[0].address == ipaddress.ip_interface("fd00::5/64")
    assert r.ips[0].gateway is None
    assert r.primary_ip() == ipaddress.ip_address("fd00::5")


def test_020_result_is_upgraded() -> None:
    r = parse_result({"cniVersion": "0.2.0",
                      "ip4": {"ip": "10.1.0.2/16", "gateway": "10.1.0.1",
                              "routes": [{"dst": "0.0.0.0/0"}]},
                      "dns": {"nameservers": ["1.1.1.1"]}})
    assert r.ips[0].address == ipaddress.ip_interface("10.1.0.2/16")
    assert r.ips[0].gateway == ipaddress.ip_address("10.1.0.1")
    assert r.routes[0].dst == ipaddress.ip_network("0.0.0.0/0")
    assert r.dns.nameservers == ("1.1.1.1",)
    assert r.interfaces == ()


def test_empty_result_has_no_ip() -> None:
    assert parse_result({"cniVersion": "1.0.0"}).primary_ip() is None


def changed(path: str, value: Any) -> dict[str, Any]:
    """CURRENT with the field at dotted PATH set to VALUE (removed for ...)."""
    root: Any = copy.deepcopy(CURRENT)
    target = root
    *parents, last = path.split(".")
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del target[key]
    else:
        target[key] = value
    return dict(root)


@pytest.mark.parametrize("path, value, field", [
    pytest.param("ips.0.address", "10.244.0.5", "result.ips[0].address", id="address-no-prefix"),
    pytest.param("ips.0.address", "banana/24", "result.ips[0].address", id="address-garbage"),
    pytest.param("ips.0.address", ..., "result.ips[0].address", id="address-missing"),
    pytest.param("ips.0.gateway", "10.244.0.300", "result.ips[0].gateway", id="bad-gateway"),
    pytest.param("ips.0.interface", 3, "result.ips[0].interface", id="interface-out-of-range"),
    pytest.param("interfaces.1.mac", "zz:zz", "result.interfaces[1].mac", id="bad-mac"),
    pytest.param("interfaces.0.name", ..., "result.interfaces[0].name", id="iface-no-name"),
    pytest.param("interfaces.2.mtu", -1, "result.interfaces[2].mtu", id="negative-mtu"),
    pytest.param("routes.0.dst", "default", "result.routes[0].dst", id="bad-route"),
    pytest.param("dns.nameservers", "10.96.0.10", "result.dns.nameservers", id="dns-not-list"),
    pytest.param("ips", {"address": "x"}, "result.ips", id="ips-not-list"),
    pytest.param("cniVersion", 1, "result.cniVersion", id="version-not-string"),
])
def test_bad_fields_are_named(path: str, value: Any, field: str) -> None:
    with pytest.raises(ResultError) as e:
        parse_result(changed(path, value))
    assert str(e.value).startswith(field + ":")


def test_not_an_object() -> None:
    with pytest.raises(ResultError, match="plugin x: result: must be a JSON object"):
        parse_result(["nope"], where="plugin x: result")
