"""Output: kubectl's per-kind tables, AGE, and -o yaml|json|name|wide|jsonpath=TEMPLATE.

    rows = table(res_kind, objs, wide=, now=, all_namespaces=)   -> header + rows (lists)
    format_table(rows)                                            -> aligned text
    render(objs, output=, ...)                                    -> what `get -o` prints

Pure functions of objects and the time: tested without a server.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]
Row = list[str]
OUTPUTS = ("wide", "yaml", "json", "name", "jsonpath=TEMPLATE")


def parse_time(text: str) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def human_duration(seconds: float) -> str:
    """kubectl's AGE: 5s, 119s, 3m2s, 45m, 4h, 5h30m, 2d, 3d4h, 400d, 2y10d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    years = days // 365
    if days < 365 * 8:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def age(timestamp: Any, now: dt.datetime) -> str:
    t = parse_time(str(timestamp or ""))
    return "<unknown>" if t is None else human_duration((now - t).total_seconds())


def _meta(o: Obj) -> Obj:
    m = o.get("metadata")
    return m if isinstance(m, dict) else {}


def _spec(o: Obj) -> Obj:
    return o.get("spec") or {}


def _status(o: Obj) -> Obj:
    return o.get("status") or {}


def _none(v: Any) -> str:
    return str(v) if v not in (None, "", []) else "<none>"


def _labels(sel: Any) -> str:
    if not isinstance(sel, dict):
        return "<none>"
    parts = [f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items()]
    for e in sel.get("matchExpressions") or []:
        parts.append(f"{e.get('key')} {str(e.get('operator', '')).lower()} "
                     f"({','.join(e.get('values') or [])})")
    return ",".join(parts) or "<none>"


# ---- one function per kind: (columns, row(obj, now), wide columns, wide row) ------------

def pod_status(o: Obj) -> str:
    """The STATUS column: kubectl's reason precedence (Terminating, waiting reason, ...)."""
    st = _status(o)
    reason = st.get("reason") or st.get("phase") or "Pending"
    for cs in st.get("initContainerStatuses") or []:
        state = cs.get("state") or {}
        if (state.get("terminated") or {}).get("exitCode", 0) != 0:
            return "Init:" + str(state["terminated"].get("reason") or "Error")
        if (state.get("waiting") or {}).get("reason") not in (None, "PodInitializing"):
            return "Init:" + str(state["waiting"]["reason"])
    for cs in reversed(st.get("containerStatuses") or []):
        state = cs.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if _meta(o).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod(o: Obj, now: dt.datetime) -> Row:
    statuses = _status(o).get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    total = len(_spec(o).get("containers") or []) or len(statuses)
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    return [f"{ready}/{total}", pod_status(o), str(restarts),
            age(_meta(o).get("creationTimestamp"), now)]


def _pod_wide(o: Obj) -> Row:
    return [_none(_status(o).get("podIP")), _none(_spec(o).get("nodeName")),
            _none(_status(o).get("nominatedNodeName"))]


def _images(o: Obj) -> Row:
    cs = ((_spec(o).get("template") or {}).get("spec") or {}).get("containers") or []
    return [",".join(str(c.get("name")) for c in cs) or "<none>",
            ",".join(str(c.get("image")) for c in cs) or "<none>",
            _labels(_spec(o).get("selector"))]


def _deployment(o: Obj, now: dt.datetime) -> Row:
    st = _status(o)
    want = _spec(o).get("replicas", 1)
    return [f"{st.get('readyReplicas', 0)}/{want}", str(st.get("updatedReplicas", 0)),
            str(st.get("availableReplicas", 0)), age(_meta(o).get("creationTimestamp"), now)]


def _replicaset(o: Obj, now: dt.datetime) -> Row:
    st = _status(o)
    return [str(_spec(o).get("replicas", 1)), str(st.get("replicas", 0)),
            str(st.get("readyReplicas", 0)), age(_meta(o).get("creationTimestamp"), now)]


def _daemonset(o: Obj, now: dt.datetime) -> Row:
    st = _status(o)
    sel = ((_spec(o).get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    return [str(st.get(k, 0)) for k in ("desiredNumberScheduled", "currentNumberScheduled",
                                         "numberReady", "updatedNumberScheduled",
                                         "numberAvailable")] + [
        ",".join(f"{k}={v}" for k, v in sel.items()) or "<none>",
        age(_meta(o).get("creationTimestamp"), now)]


def _job(o: Obj, now: dt.datetime) -> Row:
    st = _status(o)
    start, end = parse_time(str(st.get("startTime") or "")), parse_time(
        str(st.get("completionTime") or ""))
    duration = human_duration(((end or now) - start).total_seconds()) if start else ""
    return [f"{st.get('succeeded', 0)}/{_spec(o).get('completions', 1)}", duration,
            age(_meta(o).get("creationTimestamp"), now)]


def _cronjob(o: Obj, now: dt.datetime) -> Row:
    last = _status(o).get("lastScheduleTime")
    return [str(_spec(o).get("schedule") or ""), str(bool(_spec(o).get("suspend"))),
            str(len(_status(o).get("active") or [])), age(last, now) if last else "<none>",
            age(_meta(o).get("creationTimestamp"), now)]


def _cronjob_wide(o: Obj) -> Row:
    return _images({"spec": (_spec(o).get("jobTemplate") or {}).get("spec") or {}})


def node_status(o: Obj) -> str:
    ready = "Unknown"
    for c in _status(o).get("conditions") or []:
        if c.get("type") == "Ready":
            ready = {"True": "Ready", "False": "NotReady"}.get(c.get("status"), "Unknown")
    if _spec(o).get("unschedulable"):
        ready += ",SchedulingDisabled"
    return ready


def _node(o: Obj, now: dt.datetime) -> Row:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix):] for k in (_meta(o).get("labels") or {})
                   if k.startswith(prefix) and k != prefix)
    return [node_status(o), ",".join(roles) or "<none>",
            age(_meta(o).get("creationTimestamp"), now),
            str((_status(o).get("nodeInfo") or {}).get("kubeletVersion") or "")]


def _node_wide(o: Obj) -> Row:
    addrs = {a.get("type"): a.get("address") for a in _status(o).get("addresses") or []}
    info = _status(o).get("nodeInfo") or {}
    return [_none(addrs.get("InternalIP")), _none(info.get("osImage")),
            _none(info.get("kernelVersion"))]


def _configmap(o: Obj, now: dt.datetime) -> Row:
    n = len(o.get("data") or {}) + len(o.get("binaryData") or {})
    return [str(n), age(_meta(o).get("creationTimestamp"), now)]


def _secret(o: Obj, now: dt.datetime) -> Row:
    n = len(o.get("data") or {}) + len(o.get("stringData") or {})
    return [str(o.get("type") or "Opaque"), str(n), age(_meta(o).get("creationTimestamp"),
                                                          now)]


def _service(o: Obj, now: dt.datetime) -> Row:
    spec = _spec(o)
    ports = ",".join(f"{p.get('port')}" + (f":{p['nodePort']}" if p.get("nodePort") else "")
                     + f"/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    return [str(spec.get("type") or "ClusterIP"), _none(spec.get("clusterIP")),
            _none(",".join(spec.get("externalIPs") or [])), ports or "<none>",
            age(_meta(o).get("creationTimestamp"), now)]


def _namespace(o: Obj, now: dt.datetime) -> Row:
    return [str(_status(o).get("phase") or "Active"),
            age(_meta(o).get("creationTimestamp"), now)]


def _event(o: Obj, now: dt.datetime) -> Row:
    io = o.get("involvedObject") or {}
    last = o.get("lastTimestamp") or o.get("eventTime") or _meta(o).get("creationTimestamp")
    return [age(last, now), str(o.get("type") or ""), str(o.get("reason") or ""),
            f"{str(io.get('kind', '')).lower()}/{io.get('name', '')}",
            str(o.get("message") or "").strip()]


def _lease(o: Obj, now: dt.datetime) -> Row:
    return [_none(_spec(o).get("holderIdentity")), age(_meta(o).get("creationTimestamp"), now)]


def _default(o: Obj, now: dt.datetime) -> Row:
    return [age(_meta(o).get("creationTimestamp"), now)]


Columns = tuple[list[str], Callable[[Obj, dt.datetime], Row], list[str],
                Callable[[Obj], Row] | None]
TABLES: dict[str, Columns] = {
    "Pod": (["READY", "STATUS", "RESTARTS", "AGE"], _pod, ["IP", "NODE", "NOMINATED NODE"],
            _pod_wide),
    "Deployment": (["READY", "UP-TO-DATE", "AVAILABLE", "AGE"], _deployment,
                   ["CONTAINERS", "IMAGES", "SELECTOR"], _images),
    "ReplicaSet": (["DESIRED", "CURRENT", "READY", "AGE"], _replicaset,
                   ["CONTAINERS", "IMAGES", "SELECTOR"], _images),
    "DaemonSet": (["DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR",
                   "AGE"], _daemonset, ["CONTAINERS", "IMAGES", "SELECTOR"], _images),
    "Job": (["COMPLETIONS", "DURATION", "AGE"], _job, ["CONTAINERS", "IMAGES", "SELECTOR"],
            _images),
    "CronJob": (["SCHEDULE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"], _cronjob,
                ["CONTAINERS", "IMAGES", "SELECTOR"], _cronjob_wide),
    "Node": (["STATUS", "ROLES", "AGE", "VERSION"], _node,
             ["INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION"], _node_wide),
    "ConfigMap": (["DATA", "AGE"], _configmap, [], None),
    "Secret": (["TYPE", "DATA", "AGE"], _secret, [], None),
    "Service": (["TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], _service, [], None),
    "Namespace": (["STATUS", "AGE"], _namespace, [], None),
    "Event": (["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], _event, [], None),
    "Lease": (["HOLDER", "AGE"], _lease, [], None),
}


def table(kind: str, objs: list[Obj], *, now: dt.datetime, wide: bool = False,
          all_namespaces: bool = False, name_prefix: str = "",
          header: bool = True) -> list[Row]:
    """Header and one row per object: kubectl's columns for KIND (NAME AGE otherwise).
    NAME_PREFIX (`deployment.apps/`) is kubectl's when several types are listed."""
    cols, row, wide_cols, wide_row = TABLES.get(kind, (["AGE"], _default, [], None))
    out: list[Row] = []
    if header:
        head = ["NAME", *cols, *(wide_cols if wide and wide_row else [])]
        if kind == "Event":
            head = head[1:]
        out.append((["NAMESPACE"] if all_namespaces else []) + head)
    for o in objs:
        name = [] if kind == "Event" else [name_prefix + str(_meta(o).get("name", ""))]
        r = name + row(o, now) + (wide_row(o) if wide and wide_row else [])
        out.append(([str(_meta(o).get("namespace", ""))] if all_namespaces else []) + r)
    return out


def format_table(rows: list[Row]) -> str:
    """Columns padded to their widest cell plus three spaces, like kubectl's tabwriter."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def as_list(objs: list[Obj]) -> Obj:
    return {"apiVersion": "v1", "kind": "List", "items": objs,
            "metadata": {"resourceVersion": ""}}


def render(objs: list[Obj], *, output: str, single: bool = False,
           refs: list[str] | None = None) -> str:
    """What -o OUTPUT prints for OBJS (one object as itself when SINGLE, else a List).
    REFS are the `-o name` strings (`deployment.apps/web`), one per object."""
    if output == "name":
        return "".join(f"{r}\n" for r in refs or [])
    doc: Any = objs[0] if single and len(objs) == 1 else as_list(objs)
    if output == "json":
        return json.dumps(doc, indent=4) + "\n"
    if output == "yaml":
        from api.codec import to_yaml
        return to_yaml(doc)
    if output.startswith("jsonpath="):
        from clusterctl.jsonpath import render as jp
        template = output[len("jsonpath="):]
        if len(template) >= 2 and template[0] == template[-1] and template[0] in "'\"":
            template = template[1:-1]
        return jp(template, doc)
    raise ValueError(f'unable to match a printer suitable for the output format "{output}", '
                     f"allowed formats are: {','.join(OUTPUTS)}")
