"""`clusterctl rollout status|history|undo|restart deployment/NAME`.

    restart   merge-patch spec.template.metadata.annotations
              kubectl.kubernetes.io/restartedAt=<now>: the controller rolls new pods
    status    watch the Deployment until observedGeneration >= generation and updated ==
              available == replicas (the controller writes these status fields)
    history   the ReplicaSets it owns, by their deployment.kubernetes.io/revision
    undo      the template of the previous (or --to-revision) ReplicaSet, patched back
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from clusterctl.session import CLIError, Session, emit

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
MERGE = "application/merge-patch+json"


def add_arguments(p: argparse.ArgumentParser, verb: str) -> None:
    from clusterctl.commands.wait import duration
    p.add_argument("action", choices=("status", "history", "undo", "restart"))
    p.add_argument("targets", nargs="+", metavar="TYPE/NAME | TYPE NAME")
    p.add_argument("--timeout", type=duration, default=0.0,
                   help="status: give up after this long (0: wait on)")
    p.add_argument("-w", "--watch", nargs="?", const=True, default=True,
                   type=lambda t: t.lower() == "true")
    p.add_argument("--to-revision", type=int, default=0)


def status_message(d: dict[str, Any]) -> tuple[str, bool]:
    """kubectl's rollout status line for Deployment D, and whether it is done."""
    name = d["metadata"]["name"]
    spec, st = d.get("spec") or {}, d.get("status") or {}
    want = spec.get("replicas", 1)
    if int(st.get("observedGeneration", 0)) < int(d["metadata"].get("generation", 1)):
        return "Waiting for deployment spec update to be observed...", False
    updated, total = st.get("updatedReplicas", 0), st.get("replicas", 0)
    available = st.get("availableReplicas", 0)
    if updated < want:
        return (f'Waiting for deployment "{name}" rollout to finish: {updated} out of '
                f"{want} new replicas have been updated..."), False
    if total > updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {total - updated} old '
                "replicas are pending termination..."), False
    if available < updated:
        return (f'Waiting for deployment "{name}" rollout to finish: {available} of '
                f"{updated} updated replicas are available..."), False
    return f'deployment "{name}" successfully rolled out', True


def run(args: argparse.Namespace) -> int:
    from clusterctl.resources import parse_targets
    s = Session(args)
    rc = 0
    for type_text, name in parse_targets(args.targets):
        res = s.resolver().resolve(type_text)
        if res.kind != "Deployment" or name is None:
            raise CLIError(f"rollout {args.action}: supports deployment/NAME, got "
                           f"{type_text}{'/' + name if name else ''}")
        ns = s.namespace
        rc |= {"status": _status, "restart": _restart, "history": _history,
               "undo": _undo}[args.action](s, args, res, ns, name)
    s.close()
    return rc


def _restart(s: Session, args: argparse.Namespace, res: Any, ns: str, name: str) -> int:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
    s.client().patch(res.name, name, json.dumps(patch).encode(), patch_type=MERGE,
                     namespace=ns, field_manager="clusterctl-rollout")
    emit(f"{res.ref(name)} restarted")
    return 0


def _status(s: Session, args: argparse.Namespace, res: Any, ns: str, name: str) -> int:
    from api.errors import APIError, Reason
    client = s.client()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    last = ""
    while True:
        d = client.get(res.name, name, namespace=ns)
        text, done = status_message(d)
        if text != last:
            emit(text)
            sys.stdout.flush()
            last = text
        if done:
            return 0
        if not args.watch:
            return 1
        left = (deadline - time.monotonic()) if deadline else 5.0
        if left <= 0:
            sys.stderr.write("error: timed out waiting for the condition\n")
            return 1
        try:
            for ev in client.watch(res.name, namespace=ns,
                                   resource_version=d["metadata"]["resourceVersion"],
                                   field_selector=f"metadata.name={name}",
                                   timeout=min(left, 5.0)):
                if ev["type"] in ("MODIFIED", "ADDED", "DELETED"):
                    break
        except APIError as err:
            if err.reason not in (Reason.TIMEOUT, Reason.GONE):
                raise


def owned_replicasets(s: Session, ns: str, d: dict[str, Any]) -> list[dict[str, Any]]:
    uid = d["metadata"].get("uid")
    listed = s.client().list("replicasets", namespace=ns)
    out = [rs for rs in listed.get("items") or []
           if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])]
    return sorted(out, key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(
        REVISION, "0")))


def _history(s: Session, args: argparse.Namespace, res: Any, ns: str, name: str) -> int:
    from clusterctl.printers import format_table
    d = s.client().get(res.name, name, namespace=ns)
    rows = [["REVISION", "CHANGE-CAUSE"]]
    for rs in owned_replicasets(s, ns, d):
        ann = rs["metadata"].get("annotations") or {}
        rows.append([str(ann.get(REVISION, "?")),
                     str(ann.get("kubernetes.io/change-cause") or "<none>")])
    emit(f"{res.ref(name)}\n" + format_table(rows))
    return 0


def _undo(s: Session, args: argparse.Namespace, res: Any, ns: str, name: str) -> int:
    d = s.client().get(res.name, name, namespace=ns)
    history = owned_replicasets(s, ns, d)
    current = str((d["metadata"].get("annotations") or {}).get(REVISION, ""))
    revs = {str((rs["metadata"].get("annotations") or {}).get(REVISION)): rs
            for rs in history}
    if args.to_revision:
        target = revs.get(str(args.to_revision))
        if target is None:
            raise CLIError(f"{res.ref(name)}: unable to find the specified revision "
                           f"{args.to_revision}")
    else:
        older = [rs for rev, rs in revs.items() if rev != current]
        if not older:
            raise CLIError(f"{res.ref(name)}: no rollout history found to undo to")
        target = older[-1]
    template = json.loads(json.dumps(target["spec"]["template"]))
    labels = (template.get("metadata") or {}).get("labels") or {}
    labels.pop("pod-template-hash", None)
    patch = [{"op": "replace", "path": "/spec/template", "value": template}]
    s.client().patch(res.name, name, json.dumps(patch).encode(),
                     patch_type="application/json-patch+json",
                     namespace=ns, field_manager="clusterctl-rollout")
    emit(f"{res.ref(name)} rolled back")
    return 0
