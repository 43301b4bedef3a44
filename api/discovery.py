"""The v1 Endpoints kind: the addresses and ports behind a Service.

    Service web (selector app=web, ports) ──endpoints controller──► Endpoints web
        subsets[]: addresses[] (ready pods), notReadyAddresses[], ports[]

Each subset pairs a set of addresses with the ports they all serve; pods whose named
target ports resolve to different numbers land in different subsets, as in Kubernetes.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from api import schema as s
from api.fields import OBJECT_REFERENCE, KindDef, port_field


def _ip(value: Any) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return f"must be a valid IP address, got {value!r}"
    return None


ENDPOINT_ADDRESS = s.Obj({
    "ip": s.string("The IP of this endpoint.", checks=(_ip,)),
    "hostname": s.string("The hostname of this endpoint."),
    "nodeName": s.string("The node hosting this endpoint."),
    "targetRef": OBJECT_REFERENCE,
}, required=("ip",), doc="One address: usually a pod's IP.")

ENDPOINT_PORT = s.Obj({
    "name": s.string("The service port's name; empty when the service has one port."),
    "port": port_field("The port number of the endpoint."),
    "protocol": s.string("TCP, UDP or SCTP.", default="TCP", enum=("TCP", "UDP", "SCTP")),
    "appProtocol": s.string("The application protocol of this port."),
}, required=("port",), doc="A port the addresses of the subset serve.")

ENDPOINT_SUBSET = s.Obj({
    "addresses": s.List(ENDPOINT_ADDRESS, doc="Addresses ready to receive traffic."),
    "notReadyAddresses": s.List(ENDPOINT_ADDRESS,
                                doc="Addresses that are not (or not yet) ready."),
    "ports": s.List(ENDPOINT_PORT, doc="Ports every address of the subset serves."),
}, doc="A group of addresses with the ports they share.")

ENDPOINTS = KindDef(
    api_version="v1", kind="Endpoints", resource="endpoints", namespaced=True,
    doc="The pod addresses and ports that implement a Service; same name as the Service.",
    fields={"subsets": s.List(ENDPOINT_SUBSET, doc="Groups of addresses and ports.")})

KIND_DEFS = (ENDPOINTS,)
