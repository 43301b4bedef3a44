"""`clusterctl top pods [NAME] [-A] [--containers]` and `clusterctl top nodes [NAME]`:
CPU and memory use as the nodes' agents measure it (kubectl top, without metrics-server:
the controlplane relays each node's Stats).

    top pods  ──► list the pods ──► NodeStats(node, namespace) per node they run on
                                ──► NAME  CPU(cores)  MEMORY(bytes)     (3m, 12Mi)
    top nodes ──► list the nodes ──► NodeStats(node) each
                                ──► NAME  CPU(cores)  CPU%  MEMORY(bytes)  MEMORY%
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from clusterctl.session import CLIError, Session, emit

MI = 1024 * 1024


def cpu(nano_cores: int) -> str:
    """kubectl's CPU column: millicores, e.g. "3m"."""
    return f"{nano_cores // 1_000_000}m"


def memory(nbytes: int) -> str:
    """kubectl's memory column: mebibytes, e.g. "12Mi"."""
    return f"{nbytes // MI}Mi"


def percent(used: int, capacity: int) -> str:
    return f"{used * 100 // capacity}%" if capacity > 0 else "<unknown>"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns left-aligned, three spaces apart, as kubectl prints them."""
    all_rows = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in all_rows) + "\n"


@dataclass(frozen=True)
class PodUsage:
    namespace: str
    name: str
    container: str  # "" for the whole pod
    cpu_nano: int
    memory: int


def pod_usage(stats: Iterable[Any], *, containers: bool) -> list[PodUsage]:
    """Per pod (summed over its containers) or, with CONTAINERS, per container; sorted."""
    out: list[PodUsage] = []
    for resp in stats:
        for p in resp.pods:
            if containers:
                out += [PodUsage(p.namespace, p.name, c.name, c.cpu_nano_cores,
                                 c.memory_working_set_bytes) for c in p.containers]
            else:
                out.append(PodUsage(p.namespace, p.name, "",
                                    sum(c.cpu_nano_cores for c in p.containers),
                                    sum(c.memory_working_set_bytes for c in p.containers)))
    return sorted(out, key=lambda u: (u.namespace, u.name, u.container))


def pods_table(usage: Sequence[PodUsage], *, all_namespaces: bool, containers: bool) -> str:
    header = [*(["NAMESPACE"] if all_namespaces else []),
              *(["POD", "NAME"] if containers else ["NAME"]), "CPU(cores)", "MEMORY(bytes)"]
    rows = [[*([u.namespace] if all_namespaces else []),
             *([u.name, u.container] if containers else [u.name]),
             cpu(u.cpu_nano), memory(u.memory)] for u in usage]
    return table(header, rows)


def node_row(name: str, stats: Any | None, node: dict[str, Any]) -> list[str]:
    """One node's line; capacities from the agent, else the Node's allocatable."""
    if stats is None:
        return [name, *["<unknown>"] * 4]
    n = stats.node
    cpu_cap = n.cpu_capacity_milli * 1_000_000
    mem_cap = n.memory_capacity_bytes
    if not cpu_cap or not mem_cap:
        from api import quantity
        alloc = (node.get("status") or {}).get("allocatable") or {}
        try:
            cpu_cap = cpu_cap or quantity.parse(alloc.get("cpu", 0)).milli_value() * 1_000_000
            mem_cap = mem_cap or quantity.parse(alloc.get("memory", 0)).value()
        except quantity.QuantityError:
            pass
    return [name, cpu(n.cpu_nano_cores), percent(n.cpu_nano_cores, cpu_cap),
            memory(n.memory_working_set_bytes), percent(n.memory_working_set_bytes, mem_cap)]


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument("kind", choices=["pods", "pod", "po", "nodes", "node", "no"],
                   metavar="pods|nodes")
    p.add_argument("name", nargs="?", default="", metavar="NAME")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("--containers", action="store_true", help="a line per container")


def _top_pods(s: Session, args: argparse.Namespace) -> int:
    from api.errors import APIError, Reason
    ns = "" if args.all_namespaces else s.namespace
    c = s.client()
    if args.name:
        pods = [c.get("pods", args.name, namespace=ns)]
    else:
        pods = c.list("pods", namespace=ns)["items"]
    nodes = sorted({(p.get("spec") or {}).get("nodeName") or "" for p in pods} - {""})
    stats = []
    for node in nodes:
        try:
            stats.append(c.node_stats(node, namespace=ns, pod=args.name))
        except APIError as err:
            if err.reason is not Reason.UNAVAILABLE:
                raise
            sys.stderr.write(f"warning: {err.message}\n")
    usage = pod_usage(stats, containers=args.containers)
    if not usage:
        raise CLIError("metrics not available yet")
    sys.stdout.write(pods_table(usage, all_namespaces=args.all_namespaces,
                                containers=args.containers))
    return 0


def _top_nodes(s: Session, args: argparse.Namespace) -> int:
    from api.errors import APIError, Reason
    c = s.client()
    nodes = [c.get("nodes", args.name)] if args.name else c.list("nodes")["items"]
    rows = []
    for node in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        name = node["metadata"]["name"]
        try:
            stats = c.node_stats(name)
        except APIError as err:
            if err.reason is not Reason.UNAVAILABLE:
                raise
            sys.stderr.write(f"warning: {err.message}\n")
            stats = None
        rows.append(node_row(name, stats, node))
    if not rows:
        raise CLIError("no nodes")
    emit(table(["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"], rows))
    return 0


def run(args: argparse.Namespace) -> int:
    s = Session(args)
    try:
        if args.kind in ("pods", "pod", "po"):
            return _top_pods(s, args)
        return _top_nodes(s, args)
    finally:
        s.close()
