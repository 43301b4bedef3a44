"""`clusterctl describe TYPE NAME... | TYPE/NAME | TYPE -l SEL`: kubectl-like sections.

    Name, Namespace, Labels, Annotations, CreationTimestamp   (every kind)
    kind sections: Pod (node, status, IP, containers, conditions), Deployment (selector,
    replicas line, strategy, pod template), Node (conditions, capacity), ConfigMap (data)
    the rest of spec/status as indented key: value lines, then the object's Events
    (the events resource, by involvedObject name/namespace, matched on uid or kind)
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from clusterctl import printers
from clusterctl.session import Session, emit, server_error

Obj = dict[str, Any]


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("targets", nargs="+", metavar="TYPE[/NAME] [NAME...]")
    p.add_argument("-l", "--selector", default="")
    p.add_argument("-A", "--all-namespaces", action="store_true")


def _pairs(items: dict[str, Any] | None, indent: int = 0) -> list[str]:
    if not items:
        return ["<none>"]
    return [f"{' ' * indent if i else ''}{k}={v}" for i, (k, v) in enumerate(items.items())]


def field(label: str, value: Any, width: int = 20) -> list[str]:
    """`Label:    value`, with multi-valued fields aligned under the first value."""
    values = value if isinstance(value, list) else [value]
    values = [str(v) for v in values] or ["<none>"]
    head = f"{label}:".ljust(width)
    return [head + values[0]] + [" " * width + v for v in values[1:]]


def nested(value: Any, indent: int) -> list[str]:
    """VALUE as indented `key: value` lines (describe's view of spec/status)."""
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                out.append(f"{pad}{k}:")
                out += nested(v, indent + 2)
            else:
                out.append(f"{pad}{k}:  {v if v not in (None, '', [], {}) else '<none>'}")
    elif isinstance(value, list):
        for item in value:
            lines = nested(item, indent + 2)
            if lines:
                out.append(pad + "- " + lines[0].lstrip())
                out += lines[1:]
    else:
        out.append(f"{pad}{value}")
    return out


def _containers(spec: Obj, status: Obj, *, template: bool = False) -> list[str]:
    states = {c.get("name"): c for c in status.get("containerStatuses") or []}
    out = ["Containers:"]
    for c in spec.get("containers") or []:
        st = states.get(c.get("name"), {})
        out.append(f"  {c.get('name')}:")
        out += ["    " + line for line in field("Image", c.get("image", ""))]
        if c.get("ports"):
            out += ["    " + line for line in field("Ports", [
                f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}" for p in c["ports"]])]
        if template:
            continue
        state = st.get("state") or {}
        word = next(iter(state), "Waiting").capitalize()
        out += ["    " + line for line in field("State", word)]
        reason = (state.get(word.lower()) or {}).get("reason")
        if reason:
            out += ["      " + line for line in field("Reason", reason, 18)]
        out += ["    " + line for line in field("Ready", str(bool(st.get("ready"))))]
        out += ["    " + line for line in field("Restart Count", st.get("restartCount", 0))]
        if c.get("command"):
            out += ["    " + line for line in field("Command", c["command"])]
    return out


def _conditions(status: Obj) -> list[str]:
    conds = status.get("conditions") or []
    if not conds:
        return []
    rows = [["Type", "Status", "Reason"]] + [[str(c.get("type")), str(c.get("status")),
                                              str(c.get("reason") or "")] for c in conds]
    return ["Conditions:"] + ["  " + line for line in
                              printers.format_table(rows).splitlines()]


def kind_sections(obj: Obj) -> tuple[list[str], set[str]]:
    """Lines for what this kind shows specially, and the top-level keys they cover."""
    kind, spec, status = obj.get("kind"), obj.get("spec") or {}, obj.get("status") or {}
    if kind == "Pod":
        out = field("Node", spec.get("nodeName") or "<none>")
        out += field("Status", printers.pod_status(obj))
        out += field("IP", status.get("podIP") or "")
        out += _containers(spec, status) + _conditions(status)
        return out, {"spec", "status"}
    if kind in ("Deployment", "ReplicaSet"):
        from clusterctl.printers import _labels
        want = spec.get("replicas", 1)
        out = field("Selector", _labels(spec.get("selector")))
        out += field("Replicas", f"{want} desired | {status.get('updatedReplicas', 0)} "
                     f"updated | {status.get('replicas', 0)} total | "
                     f"{status.get('availableReplicas', 0)} available | "
                     f"{status.get('unavailableReplicas', 0)} unavailable")
        if kind == "Deployment":
            out += field("StrategyType", (spec.get("strategy") or {}).get("type",
                                                                          "RollingUpdate"))
        tmpl = spec.get("template") or {}
        out += ["Pod Template:", "  " + field("Labels", _pairs(
            (tmpl.get("metadata") or {}).get("labels"), 22))[0]]
        out += ["  " + line for line in _containers(tmpl.get("spec") or {}, {},
                                                           template=True)]
        out += _conditions(status)
        return out, {"spec", "status"}
    if kind == "Node":
        out = field("Roles", printers.table("Node", [obj], now=dt.datetime.now(dt.UTC),
                                            header=False)[0][2])
        out += field("Unschedulable", str(bool(spec.get("unschedulable"))).lower())
        out += _conditions(status)
        for key in ("capacity", "allocatable"):
            if status.get(key):
                out += [f"{key.capitalize()}:"] + [f"  {k}:  {v}" for k, v in
                                                   status[key].items()]
        return out, {"status"}
    if kind == "ConfigMap":
        out = ["", "Data", "===="]
        for k, v in (obj.get("data") or {}).items():
            out += [f"{k}:", "----", str(v), ""]
        return out, {"data", "binaryData"}
    return [], set()


def events_of(s: Session, obj: Obj) -> list[Obj]:
    m = obj.get("metadata") or {}
    fields = f"involvedObject.name={m.get('name')}"
    ns = m.get("namespace", "")
    if ns:
        fields += f",involvedObject.namespace={ns}"
    listed = s.client().list("events", namespace=ns or "", field_selector=fields)
    out = []
    for ev in listed.get("items") or []:
        io = ev.get("involvedObject") or {}
        if io.get("uid") and m.get("uid") and io["uid"] != m["uid"]:
            continue
        if io.get("kind") and io["kind"] != obj.get("kind"):
            continue
        out.append(ev)
    return sorted(out, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


def describe(obj: Obj, events: list[Obj], *, now: dt.datetime) -> str:
    m = obj.get("metadata") or {}
    out = field("Name", m.get("name", ""))
    if m.get("namespace"):
        out += field("Namespace", m["namespace"])
    out += field("Labels", _pairs(m.get("labels")))
    out += field("Annotations", _pairs(m.get("annotations")))
    out += field("CreationTimestamp", m.get("creationTimestamp", ""))
    if m.get("deletionTimestamp"):
        out += field("DeletionTimestamp", m["deletionTimestamp"])
    for ref in m.get("ownerReferences") or []:
        out += field("Controlled By", f"{ref.get('kind')}/{ref.get('name')}")
    special, covered = kind_sections(obj)
    out += special
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "metadata") or key in covered or not value:
            continue
        out.append(f"{key.capitalize()}:")
        out += nested(value, 2)
    if not events:
        out.append("Events:              <none>")
    else:
        rows = [["Type", "Reason", "Age", "From", "Message"],
                ["----", "------", "----", "----", "-------"]]
        for ev in events:
            when = ev.get("lastTimestamp") or ev.get("eventTime") or (
                ev.get("metadata") or {}).get("creationTimestamp")
            source = (ev.get("source") or {}).get("component") or ev.get(
                "reportingComponent") or ""
            rows.append([str(ev.get("type") or ""), str(ev.get("reason") or ""),
                         printers.age(when, now), str(source),
                         str(ev.get("message") or "").strip()])
        out.append("Events:")
        out += ["  " + line for line in printers.format_table(rows).splitlines()]
    return "\n".join(out) + "\n"


def run(args: argparse.Namespace) -> int:
    from api.errors import APIError
    from clusterctl.resources import parse_targets
    s = Session(args)
    resolver = s.resolver()
    client = s.client()
    objs: list[Obj] = []
    rc = 0
    for type_text, name in parse_targets(args.targets):
        res = resolver.resolve(type_text)
        ns = ("" if args.all_namespaces else s.namespace) if res.namespaced else ""
        if name is None:
            listed = client.list(res.name, namespace=ns, label_selector=args.selector)
            objs += [{"apiVersion": res.api_version, "kind": res.kind, **o}
                     for o in listed.get("items") or []]
            continue
        try:
            objs.append(client.get(res.name, name, namespace=ns))
        except APIError as err:
            sys.stderr.write(server_error(err, res=res, name=name) + "\n")
            rc = 1
    now = dt.datetime.now(dt.UTC)
    emit("\n\n".join(describe(o, events_of(s, o), now=now).rstrip("\n") for o in objs)
         if objs else "")
    s.close()
    return rc
