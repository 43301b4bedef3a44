"""The corral-agent command: wire the API client, the CRI client and the loops.

    corral-agent --config FILE --node-name NAME --runtime-socket PATH
                 [--root DIR] [--listen HOST:PORT] [--http-listen HOST:PORT]
                 [--tls-cert-file F --tls-key-file F] [--cgroup-parent PATH]
                 [--system-reserved cpu=Q,memory=Q,pid=N] [--kube-reserved ...]
                 [--enforce-node-allocatable pods|none] [--pod-max-pids N]

--listen serves the node API (nodeapi.py: logs, exec, stats) over mutual TLS with the
node's credentials; --http-listen serves /healthz and /metrics (metrics/) in plain HTTP.
The reservations and the pids limit are kubelet's: node.py computes allocatable and holds
--cgroup-parent to it, qos.py (cgroupfs.py underneath) limits each pod's cgroup.

Footprint: what an idle node does not use is not imported. prometheus_client loads only
with the first scrape of /metrics (--http-listen), websockets with the first
exec/attach/port-forward, httpx with the first httpGet probe; the node API reads
certificates without `cryptography`.
tests/unit/agent/test_footprint.py holds the line; bench/node_footprint.py measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agent import cri as C
from agent import env as envmod
from agent import lease as L
from agent import node as N
from agent import nodeapi, volumes
from agent import pods as P
from agent import stats as ST
from agent import status as S
from agent import worker as W
from agent.metrics.cgroups import CgroupReader
from agent.metrics.machine import read_machine
from agent.metrics.record import RECORDER
from api import client as api_client
from runtime.service.cri import client as cric
from runtime.service.cri import stream

log = logging.getLogger("corral.agent")


def add_arguments(p: argparse.ArgumentParser, *, runtime_socket: bool = True) -> None:
    """The agent's flags; without --runtime-socket when RUNTIME_SOCKET is False (corral-node
    serves the runtime itself and gives the agent the socket it serves)."""
    p.add_argument("--config", required=True, help="kubeconfig-style file with the node's "
                   "credentials")
    p.add_argument("--node-name", required=True, help="name of this node")
    if runtime_socket:
        p.add_argument("--runtime-socket", required=True, help="CRI socket of the runtime")
    p.add_argument("--root", default="/var/lib/corral-agent", help="agent state and logs")
    p.add_argument("--listen", default="", help="HOST:PORT of the node API (logs, exec, "
                   "stats; mutual TLS)")
    p.add_argument("--http-listen", default="", help="HOST:PORT of /healthz and /metrics "
                   "(plain HTTP)")
    p.add_argument("--tls-cert-file", default="", help="the node API's certificate (default: "
                   "the client certificate of --config)")
    p.add_argument("--tls-key-file", default="", help="the key of --tls-cert-file")
    p.add_argument("--cgroup-parent", default="/corral-pods",
                   help="cgroup under which pod sandboxes are made")
    for flag, who in (("--system-reserved", "the system's daemons"),
                      ("--kube-reserved", "the agent and the runtime")):
        p.add_argument(flag, default=N.Reserved(), type=N.reserved_flag(flag),
                       metavar="cpu=Q,memory=Q,pid=N", help=f"kept back from pods for {who} "
                       "(Kubernetes quantities, as kubelet's): allocatable is the capacity "
                       "less both reservations and the 100Mi memory eviction threshold")
    p.add_argument("--enforce-node-allocatable", default=frozenset({"pods"}),
                   type=N.flag_type("--enforce-node-allocatable", N.parse_enforced),
                   help="pods (default): hold --cgroup-parent to the capacity less the "
                   "reservations; none: to the capacity")
    p.add_argument("--pod-max-pids", default=-1,
                   type=N.flag_type("--pod-max-pids", N.parse_pod_max_pids),
                   help="pids.max of every pod cgroup (-1: unlimited)")
    p.add_argument("--node-ip", default="", help="InternalIP (default: the address that "
                   "reaches the controlplane)")
    p.add_argument("--volume-refresh-period", type=float, default=60.0,
                   help="seconds between refreshes of configMap, secret and downwardAPI "
                   "volumes while a pod runs")
    p.add_argument("--log-level", default="INFO")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="corral-agent", description=__doc__.splitlines()[0])
    add_arguments(p)
    return p.parse_args(argv)


async def runtime_readiness(cri: cric.CRIClient) -> tuple[bool, str]:
    try:
        st = await cri.status()
    except cric.CRIError as err:
        return False, f"container runtime is down: {err}"
    down = [f"{c.type}: {c.reason} {c.message}".strip() for c in st.status.conditions
            if not c.status]
    return (not down), "; ".join(down)


class PodVolumes:
    """agent/volumes.py behind the worker's Volumes hook: prepare (name -> Volume, whose
    mounts the worker checks), refresh (configMap/secret/downwardAPI content), cleanup.
    The pod comes from the worker with the sandbox's and the node's IPs in its status."""

    def __init__(self, api: api_client.AsyncClient, pod_dir: str) -> None:
        self.api = api
        self.pod_dir = pod_dir

    async def prepare(self, pod: Mapping[str, Any]) -> Mapping[str, volumes.Volume]:
        return await volumes.prepare(pod, pod_dir=self.pod_dir, client=self.api)

    async def refresh(self, pod: Mapping[str, Any]) -> list[str]:
        return await volumes.refresh(pod, pod_dir=self.pod_dir, client=self.api)

    async def cleanup(self, pod: Mapping[str, Any]) -> None:
        volumes.teardown(str(pod["metadata"]["uid"]), pod_dir=self.pod_dir)


class BoundPods:
    """The node API's view of the pods this agent runs: the pod workers' pods (bound to
    this node) with the runtime's state from the shared relist."""

    def __init__(self, manager: P.PodManager, relist: P.Relist) -> None:
        self.manager = manager
        self.relist = relist

    async def all(self) -> list[nodeapi.BoundPod]:
        runtime = await self.relist()
        return [nodeapi.BoundPod(w.pod, runtime.get(uid) or C.PodRuntime(uid))
                for uid, w in list(self.manager.workers.items()) if not w.gone]

    async def get(self, namespace: str, name: str) -> nodeapi.BoundPod | None:
        for w in list(self.manager.workers.values()):
            if w.key == f"{namespace}/{name}" and not w.gone:
                runtime = await self.relist()
                return nodeapi.BoundPod(w.pod, runtime.get(w.uid) or C.PodRuntime(w.uid))
        return None


def pid_getter(cri: cric.CRIClient) -> ST.PidOf:
    """A container's init PID from CRI ContainerStatus's verbose info (corral-runtimed and
    containerd both put {"pid": N} under "info")."""
    async def pid_of(container_id: str) -> int:
        r = await cri.container_status(container_id, verbose=True)
        try:
            return int(json.loads(r.info.get("info") or "{}").get("pid") or 0)
        except (ValueError, AttributeError):
            return 0
    return pid_of


def tls_for(args: argparse.Namespace, config: api_client.ClientConfig) -> nodeapi.TLS:
    """The node API's server credentials: --tls-cert/key-file, else the node's own."""
    if bool(args.tls_cert_file) != bool(args.tls_key_file):
        raise api_client.ConfigError("--tls-cert-file and --tls-key-file: give both or "
                                     "neither")
    if args.tls_cert_file:
        try:
            with open(args.tls_cert_file, "rb") as f:
                cert = f.read()
            with open(args.tls_key_file, "rb") as f:
                key = f.read()
        except OSError as err:
            raise api_client.ConfigError(f"--tls-cert-file/--tls-key-file: {err}") from None
    else:
        cert, key = config.cert_pem, config.key_pem
    if not cert or not key:
        raise api_client.ConfigError(f"{config.source}: users[].user.client-certificate-data:"
                                     " the node API (--listen) needs the node's certificate "
                                     "and key (or --tls-cert-file/--tls-key-file)")
    if not config.ca_pem:
        raise api_client.ConfigError(f"{config.source}: clusters[].cluster."
                                     "certificate-authority-data: the node API (--listen) "
                                     "verifies callers against the cluster CA")
    return nodeapi.TLS(cert_pem=cert, key_pem=key, ca_pem=config.ca_pem)


def split_listen(value: str, flag: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise api_client.ConfigError(f"{flag}: want HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def env_hook(api: api_client.AsyncClient) -> W.EnvResolver:
    """fieldRef env from POD as the worker gives it: status.podIP is the sandbox's IP and
    status.hostIP the node's (worker.with_sandbox_ips), set before the API's status has
    them."""
    async def resolve(pod: Mapping[str, Any], container: Mapping[str, Any],
                      ) -> list[tuple[str, str]]:
        return await envmod.resolve(pod, container, client=api)
    return resolve


def metrics_registry(inventory: ST.Inventory, reader: CgroupReader,
                     machine: Any) -> Callable[[], Any]:
    """What makes the /metrics registry on the first scrape: prometheus_client (2.7 MB
    of RSS) stays unloaded on a node that nobody scrapes; /healthz does without it."""
    def make() -> Any:
        from agent.metrics import agent as agent_metrics
        from agent.metrics.cadvisor import CadvisorCollector

        agent_metrics.REGISTRY.register(CadvisorCollector(inventory, reader=reader,
                                                          machine=machine))
        return agent_metrics.REGISTRY
    return make


async def run(args: argparse.Namespace) -> None:
    config = api_client.load_config(args.config)
    tls = tls_for(args, config) if args.listen else None
    http = split_listen(args.http_listen, "--http-listen") if args.http_listen else None
    api = api_client.AsyncClient(config)
    cri = cric.CRIClient(args.runtime_socket, observe=RECORDER.observe_cri)
    log_root = os.path.join(args.root, "pods")
    os.makedirs(log_root, exist_ok=True)
    closers: list[Callable[[], Awaitable[Any]]] = []
    try:
        version = await cri.version()
        runtime_version = f"{version.runtime_name}://{version.runtime_version}"
        ip = args.node_ip or N.local_ip_towards(config.server)
        port = split_listen(args.listen, "--listen")[1] if args.listen else 0
        facts = N.probe_host(internal_ip=ip, runtime_version=runtime_version,
                             agent_port=port)
        reserve = N.Reservation(system=args.system_reserved, kube=args.kube_reserved,
                                enforce=args.enforce_node_allocatable)
        try:  # kubelet's node allocatable: checked, and enforced on --cgroup-parent
            await asyncio.to_thread(N.enforce_reservation, reserve, facts,
                                    cgroup_parent=args.cgroup_parent)
        except N.ReservedError as err:
            raise api_client.ConfigError(str(err)) from None
        reg = N.NodeRegistration(api, args.node_name, facts,
                                 lambda: runtime_readiness(cri), fs_path=args.root,
                                 reserve=reserve)
        node = await reg.register()
        lease = L.NodeLease(api, args.node_name,
                            node_uid=str((node.get("metadata") or {}).get("uid") or ""))
        relist = P.Relist(C.Runtime(cri))
        env = W.WorkerEnv(api=api, cri=cri, refresh=relist, runtime=relist.runtime,
                          writer=S.StatusWriter(api),
                          log_root=log_root, cgroup_parent=args.cgroup_parent, host_ip=ip,
                          runtime_name=version.runtime_name or "corral",
                          volumes=PodVolumes(api, os.path.join(args.root, "volumes")),
                          env=env_hook(api), node_name=args.node_name,
                          volume_refresh=args.volume_refresh_period,
                          pod_max_pids=args.pod_max_pids)
        manager = P.PodManager(source=api, node_name=args.node_name, env=env, relist=relist)

        reader = CgroupReader()
        machine = read_machine()
        inventory = ST.Inventory(pid_of=pid_getter(cri), cgroup_parent=args.cgroup_parent)
        servicer = nodeapi.NodeServicer(
            node=args.node_name, pods=BoundPods(manager, relist), cri=cri, log_root=log_root,
            inventory=inventory, sampler=ST.Sampler(reader), machine=machine,
            connect=stream.connect, exit_code=stream.exit_code)
        if tls is not None:
            grpc_server, bound = await nodeapi.serve(servicer, listen=args.listen, tls=tls)
            closers.append(lambda: grpc_server.stop(1))
            log.info("node %s: node API on %s (port %d, mutual TLS)", args.node_name,
                     args.listen, bound)
        if http is not None:
            from agent.metrics.server import MetricsServer

            metrics_server = MetricsServer(metrics_registry(inventory, reader, machine),
                                           host=http[0], port=http[1])
            await metrics_server.start()
            closers.append(metrics_server.close)
            log.info("node %s: /metrics and /healthz on %s:%d", args.node_name, http[0],
                     metrics_server.port)
        log.info("node %s: agent running (runtime %s)", args.node_name, runtime_version)
        await asyncio.gather(lease.run(), reg.run(), manager.run(), servicer.run())
    finally:
        for close in reversed(closers):
            with contextlib.suppress(Exception):
                await close()
        await cri.close()
        await api.close()


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    """The logging of corral-agent and corral-node (nodehost): LEVEL (--log-level, any
    case) to stderr, one line a record; grpc's own logger only from WARNING."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format=LOG_FORMAT)
    logging.getLogger("grpc").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    loop = asyncio.new_event_loop()
    task = loop.create_task(run(args))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        loop.run_until_complete(task)
    except asyncio.CancelledError:
        log.info("node %s: agent stopped; containers keep running", args.node_name)
    except api_client.ConfigError as err:
        print(f"corral-agent: {err}", file=sys.stderr)
        return 2
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
