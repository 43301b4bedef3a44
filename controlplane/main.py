"""corral-controlplane: the API server (and, once elected, the scheduler and controllers).

    corral-controlplane --etcd-endpoints URL[,URL...] --listen HOST:PORT --data-dir DIR
                        [--http-listen HOST:PORT] [--token-file F --token-listen HOST:PORT]
                        [--encryption-config F]
                        [--tls-san NAME]... [--insecure] [--workers N]
                        [--node-monitor-grace-period 40s] [--node-eviction-rate 0.1]
                        [--leader-elect-lease-duration 10s]
                        [--leader-elect-renew-deadline 8s] [--leader-elect-retry-period 2s]

With --workers N (default: one per CPU but one) N processes serve --listen together
(controlplane/apiserver/workers.py); this one keeps HTTP and leader election.

Writes DIR/admin.conf (a clusterctl config for the admin) once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
from typing import TYPE_CHECKING

from controlplane.storage import compaction
from controlplane.storage.errors import StorageError

if TYPE_CHECKING:
    from controlplane.leaderlease import Timing

PRIMARY_ENV = "CORRAL_PRIMARY_PID"  # set for --workers processes: whose death ends them


def default_workers() -> int:
    """One process per CPU, but one CPU is left to etcd, which runs beside the controlplane
    (deploy/): on 2 CPUs shared with etcd, 2 processes served no more writes than 1 and
    spent ~10% more CPU on each (bench/api_write.py)."""
    return max(1, (os.cpu_count() or 1) - 1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="corral-controlplane", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--etcd-endpoints", required=True,
                   help="comma-separated etcd client URLs (http://127.0.0.1:2379)")
    p.add_argument("--listen", default="127.0.0.1:6443", help="gRPC (TLS) address")
    p.add_argument("--http-listen", default="127.0.0.1:6444",
                   help="plain HTTP address for /healthz, /readyz and /metrics")
    p.add_argument("--data-dir", required=True, help="PKI and admin.conf live here")
    p.add_argument("--token-file", default="", help="static bearer tokens (CSV: "
                   "token,user,uid,\"group1,group2\")")
    p.add_argument("--token-listen", default="", help="TLS address for bearer-token "
                   "clients (--listen requires client certificates)")
    p.add_argument("--encryption-config", default="",
                   help="Kubernetes EncryptionConfiguration with aesgcm keys for secrets")
    p.add_argument("--tls-san", action="append", default=[],
                   help="another name or IP for the server certificate (repeatable)")
    p.add_argument("--leader-elect", default="true", choices=("true", "false"),
                   help="campaign to run the scheduler and controllers (default true)")
    p.add_argument("--leader-elect-lease-duration", default="10s", metavar="DURATION",
                   help="the leader's etcd lease (whole seconds): a standby takes over this "
                   "long after the leader's last renewal (default 10s)")
    p.add_argument("--leader-elect-renew-deadline", default="8s", metavar="DURATION",
                   help="a leader that has not renewed for this long stops leading; "
                   "< the lease duration (default 8s)")
    p.add_argument("--leader-elect-retry-period", default="2s", metavar="DURATION",
                   help="how often the leader renews; < the renew deadline (default 2s)")
    p.add_argument("--insecure", action="store_true",
                   help="plain gRPC without authentication (loopback testing only)")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="server processes sharing --listen (default: one per CPU but one, "
                   "which etcd gets; at least 1)")
    p.add_argument("--worker-id", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--node-monitor-grace-period", default="40s", metavar="DURATION",
                   help="how long a node's Lease may go unrenewed before the node is "
                   "NotReady (Unknown) and tainted (e.g. 40s, 1m30s, 500ms)")
    p.add_argument("--node-eviction-rate", type=float, default=0.1, metavar="PER_SECOND",
                   help="nodes tainted NoExecute (their pods evicted) per second")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers {args.workers}: must be >= 1")
    try:
        args.node_monitor_grace_period = parse_duration(args.node_monitor_grace_period)
    except ValueError as err:
        p.error(f"--node-monitor-grace-period {args.node_monitor_grace_period}: {err}")
    if args.node_monitor_grace_period <= 0:
        p.error(f"--node-monitor-grace-period: must be > 0, got "
                f"{args.node_monitor_grace_period:g}s")
    if args.node_eviction_rate <= 0:
        p.error(f"--node-eviction-rate: must be > 0, got {args.node_eviction_rate:g}")
    args.leader_timing = leader_timing(p, args)
    return args


def leader_timing(p: argparse.ArgumentParser, args: argparse.Namespace) -> Timing:
    """The --leader-elect-* durations, checked as kube-controller-manager does."""
    from controlplane.leaderlease import Timing

    seconds = {}
    for name in ("lease_duration", "renew_deadline", "retry_period"):
        flag = "--leader-elect-" + name.replace("_", "-")
        text = getattr(args, "leader_elect_" + name)
        try:
            seconds[name] = parse_duration(text)
        except ValueError as err:
            p.error(f"{flag} {text}: {err}")
    try:
        return Timing(**seconds)
    except ValueError as err:  # "leader election: renew_deadline: must be < ..."
        text = str(err).removeprefix("leader election: ")
        for name in seconds:
            text = text.replace(name, "--leader-elect-" + name.replace("_", "-"))
        p.error(text)


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration ("40s", "1m30s", "500ms"), or a plain number of seconds."""
    import re

    try:
        return float(text)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError("not a duration (e.g. 40s, 1m30s, 500ms)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


async def run(args: argparse.Namespace, argv: list[str]) -> int:
    from controlplane import manager
    from controlplane.apiserver import workers
    from controlplane.apiserver.server import APIServer, Options, split_hostport

    worker = args.worker_id > 0
    manager.configure(manager.ControllerOptions(
        node_monitor_grace_period=args.node_monitor_grace_period,
        node_eviction_rate=args.node_eviction_rate))
    server = APIServer(Options(
        etcd_endpoints=[u for u in args.etcd_endpoints.split(",") if u],
        data_dir=args.data_dir, listen=args.listen, http_listen=args.http_listen,
        hosts=args.tls_san, token_file=args.token_file, token_listen=args.token_listen,
        encryption_config=args.encryption_config, insecure=args.insecure,
        leader_elect=args.leader_elect == "true" and not worker,
        leader_timing=args.leader_timing,
        compaction_interval=0 if worker else compaction.DEFAULT_INTERVAL,
        worker_id=args.worker_id, reuse_port=args.workers > 1))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    supervisor = None
    if worker:
        workers.say_ready()
    else:
        if args.workers > 1:  # the extra processes bind the port this one got
            host = split_hostport(args.listen, "--listen")[0]
            extra = ["--listen", f"{host}:{server.port}", "--workers", str(args.workers)]
            if args.token_listen:
                thost = split_hostport(args.token_listen, "--token-listen")[0]
                extra += ["--token-listen", f"{thost}:{server.token_port}"]
            supervisor = workers.Supervisor(workers.worker_argv([*argv, *extra]),
                                            count=args.workers - 1)
            server.also_ready = supervisor.not_ready
            supervisor.start()
        print(f"corral-controlplane: serving on port {server.port}, HTTP on port "
              f"{server.http_port}, {args.workers} process(es)", file=sys.stderr, flush=True)
    await stop.wait()
    if supervisor is not None:
        await supervisor.stop()
    await server.stop()
    return 0


def issue_node_cert(argv: list[str]) -> int:
    """`corral-controlplane issue-node-cert --data-dir DIR --node NAME --out FILE`: a
    kubeconfig for NAME's agent (system:node:NAME, group system:nodes), signed by the
    cluster CA under DIR/pki, for the server that DIR/admin.conf names."""
    import base64

    import yaml

    from controlplane.apiserver.pki import ClusterPKI, PKIError, node_credentials

    p = argparse.ArgumentParser(prog="corral-controlplane issue-node-cert",
                                description=issue_node_cert.__doc__)
    p.add_argument("--data-dir", required=True, help="the controlplane's --data-dir")
    p.add_argument("--node", required=True, help="the node's name")
    p.add_argument("--out", required=True, help="where to write the node's kubeconfig")
    args = p.parse_args(argv)
    admin = os.path.join(args.data_dir, "admin.conf")
    try:
        with open(admin) as f:
            doc = yaml.safe_load(f)
        pair = node_credentials(ClusterPKI.at(os.path.join(args.data_dir, "pki")), args.node)
        user = f"system:node:{args.node}"
        doc["users"] = [{"name": user, "user": {
            "client-certificate-data": base64.b64encode(pair.cert_pem).decode(),
            "client-key-data": base64.b64encode(pair.key_pem).decode()}}]
        for ctx in doc.get("contexts") or []:
            ctx["context"]["user"] = user
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
    except (OSError, ValueError, PKIError, KeyError, TypeError) as err:
        print(f"corral-controlplane issue-node-cert: node {args.node}: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["issue-node-cert"]:
        return issue_node_cert(argv[1:])
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from controlplane.apiserver import workers  # before prometheus_client is imported
    try:
        if args.worker_id:
            workers.die_with_parent(int(os.environ.get(PRIMARY_ENV, "0")))
        elif args.workers > 1:
            os.environ[workers.METRICS_ENV] = workers.prepare_metrics_dir(args.data_dir)
            os.environ[PRIMARY_ENV] = str(os.getpid())
        return asyncio.run(run(args, argv))
    except (StorageError, OSError, ValueError) as err:
        print(f"corral-controlplane: {err}", file=sys.stderr)
        return 1
    finally:
        if not args.worker_id and args.workers > 1:
            shutil.rmtree(workers.metrics_dir(args.data_dir, os.getpid()), ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
