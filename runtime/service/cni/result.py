"""A plugin's ADD result, typed: interfaces, IPs (with gateway), routes, DNS.

``parse_result(raw, where=…)`` accepts the 1.x / 0.3-0.4 shape (``interfaces`` + ``ips``)
and the old 0.1/0.2 shape (``ip4``/``ip6``), validates each field and keeps the raw JSON so
that it can be handed to the next plugin as ``prevResult`` unchanged.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from runtime.service.cni.errors import ResultError

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5,19}$")


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    mtu: int | None = None
    sandbox: str = ""  # the netns path for container interfaces; empty on the host


@dataclass(frozen=True)
class IPConfig:
    address: IPInterface  # address + prefix
    gateway: IPAddress | None = None
    interface: int | None = None  # index into Result.interfaces


@dataclass(frozen=True)
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None


@dataclass(frozen=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Result:
    cni_version: str
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = DNS()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def sandbox_ips(self, sandbox: str | None = None) -> list[IPConfig]:
        """IPs on container interfaces (in SANDBOX if given): the pod's addresses."""
        out = []
        for ip in self.ips:
            if ip.interface is None or ip.interface >= len(self.interfaces):
                continue
            iface = self.interfaces[ip.interface]
            if iface.sandbox and (sandbox is None or iface.sandbox == sandbox):
                out.append(ip)
        return out

    def primary_ip(self) -> IPAddress | None:
        """The pod IP: the first sandbox address, else the first address."""
        ips = self.sandbox_ips() or list(self.ips)
        return ips[0].address.ip if ips else None


def _str(obj: dict[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise ResultError(f"{where}.{key}: required")
        return ""
    if not isinstance(value, str):
        raise ResultError(f"{where}.{key}: must be a string, got {value!r}")
    return value


def _interface(raw: Any, where: str) -> Interface:
    if not isinstance(raw, dict):
        raise ResultError(f"{where}: must be an object, got {raw!r}")
    name = _str(raw, "name", where, required=True)
    mac = _str(raw, "mac", where)
    if mac and not _MAC.match(mac):
        raise ResultError(f"{where}.mac: not a MAC address: {mac!r}")
    mtu = raw.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool) or mtu < 0):
        raise ResultError(f"{where}.mtu: must be a non-negative integer, got {mtu!r}")
    return Interface(name=name, mac=mac, mtu=mtu, sandbox=_str(raw, "sandbox", where))


def _ip(raw: Any, where: str, n_interfaces: int) -> IPConfig:
    if not isinstance(raw, dict):
        raise ResultError(f"{where}: must be an object, got {raw!r}")
    text = _str(raw, "address", where, required=True)
    try:
        address = ipaddress.ip_interface(text)
    except ValueError:
        raise ResultError(f"{where}.address: not an address in CIDR form: {text!r}") from None
    if "/" not in text:
        raise ResultError(f"{where}.address: not an address in CIDR form: {text!r}")
    gateway = _address(raw, "gateway", where)
    index = raw.get("interface")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)
                              or not 0 <= index < n_interfaces):
        raise ResultError(f"{where}.interface: no interface with index {index!r} "
                          f"({n_interfaces} listed)")
    return IPConfig(address=address, gateway=gateway, interface=index)


def _address(raw: dict[str, Any], key: str, where: str) -> IPAddress | None:
    text = _str(raw, key, where)
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ResultError(f"{where}.{key}: not an IP address: {text!r}") from None


def _route(raw: Any, where: str) -> Route:
    if not isinstance(raw, dict):
        raise ResultError(f"{where}: must be an object, got {raw!r}")
    text = _str(raw, "dst", where, required=True)
    try:
        dst = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ResultError(f"{where}.dst: not a network in CIDR form: {text!r}") from None
    return Route(dst=dst, gw=_address(raw, "gw", where))


def _strings(raw: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ResultError(f"{where}.{key}: must be a list of strings, got {value!r}")
    return tuple(value)


def _dns(raw: Any, where: str) -> DNS:
    if raw is None:
        return DNS()
    if not isinstance(raw, dict):
        raise ResultError(f"{where}: must be an object, got {raw!r}")
    return DNS(nameservers=_strings(raw, "nameservers", where), domain=_str(raw, "domain", where),
               search=_strings(raw, "search", where), options=_strings(raw, "options", where))


def _list(raw: dict[str, Any], key: str, where: str) -> list[Any]:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise ResultError(f"{where}.{key}: must be a list, got {value!r}")
    return value


def _upgrade_020(raw: dict[str, Any]) -> dict[str, Any]:
    """0.1.0/0.2.0 ``ip4``/``ip6`` -> the current shape (no interfaces are known)."""
    ips: list[dict[str, Any]] = []
    routes: list[Any] = []
    for key in ("ip4", "ip6"):
        block = raw.get(key)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise ResultError(f"result.{key}: must be an object, got {block!r}")
        entry = {"address": block.get("ip")}
        if block.get("gateway"):
            entry["gateway"] = block["gateway"]
        ips.append(entry)
        routes.extend(block.get("routes") or [])
    return {"cniVersion": raw.get("cniVersion", "0.2.0"), "ips": ips, "routes": routes,
            "dns": raw.get("dns")}


def parse_result(raw: Any, *, where: str = "result") -> Result:
    """RAW (decoded JSON) -> Result; ResultError names the field (``result.ips[0].address``)."""
    if not isinstance(raw, dict):
        raise ResultError(f"{where}: must be a JSON object, got {raw!r}")
    version = raw.get("cniVersion", "")
    if not isinstance(version, str):
        raise ResultError(f"{where}.cniVersion: must be a string, got {version!r}")
    shaped = _upgrade_020(raw) if ("ip4" in raw or "ip6" in raw) and "ips" not in raw else raw
    interfaces = tuple(_interface(v, f"{where}.interfaces[{i}]")
                       for i, v in enumerate(_list(shaped, "interfaces", where)))
    ips = tuple(_ip(v, f"{where}.ips[{i}]", len(interfaces))
                for i, v in enumerate(_list(shaped, "ips", where)))
    routes = tuple(_route(v, f"{where}.routes[{i}]")
                   for i, v in enumerate(_list(shaped, "routes", where)))
    return Result(cni_version=version, interfaces=interfaces, ips=ips, routes=routes,
                  dns=_dns(shaped.get("dns"), f"{where}.dns"), raw=raw)
