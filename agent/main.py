"""The corral-agent command: wire the API client, the CRI client and the loops.

    corral-agent --config FILE --node-name NAME --runtime-socket PATH
                 [--root DIR] [--listen HOST:PORT] [--cgroup-parent PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

from agent import cri as C
from agent import env as envmod
from agent import lease as L
from agent import node as N
from agent import pods as P
from agent import status as S
from agent import volumes
from agent import worker as W
from api import client as api_client
from runtime.service.cri import client as cric

log = logging.getLogger("corral.agent")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="corral-agent", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="kubeconfig-style file with the node's "
                   "credentials")
    p.add_argument("--node-name", required=True, help="name of this node")
    p.add_argument("--runtime-socket", required=True, help="CRI socket of the runtime")
    p.add_argument("--root", default="/var/lib/corral-agent", help="agent state and logs")
    p.add_argument("--listen", default="", help="HOST:PORT of the agent's endpoint")
    p.add_argument("--cgroup-parent", default="/corral-pods",
                   help="cgroup under which pod sandboxes are made")
    p.add_argument("--node-ip", default="", help="InternalIP (default: the address that "
                   "reaches the controlplane)")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def runtime_readiness(cri: cric.CRIClient) -> tuple[bool, str]:
    try:
        st = await cri.status()
    except cric.CRIError as err:
        return False, f"container runtime is down: {err}"
    down = [f"{c.type}: {c.reason} {c.message}".strip() for c in st.status.conditions
            if not c.status]
    return (not down), "; ".join(down)


async def serve_health(listen: str) -> asyncio.AbstractServer:
    """A minimal HTTP endpoint: /healthz answers ok (logs, exec and metrics come later)."""
    host, _, port = listen.rpartition(":")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        path = line.split()[1].decode() if len(line.split()) > 1 else "/"
        ok = path == "/healthz"
        body = b"ok" if ok else b"not found"
        writer.write(b"HTTP/1.1 " + (b"200 OK" if ok else b"404 Not Found") +
                     b"\r\nContent-Length: " + str(len(body)).encode() +
                     b"\r\nConnection: close\r\n\r\n" + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, host or "127.0.0.1", int(port))


class PodVolumes:
    """agent/volumes.py behind the worker's Volumes hook (name -> host path)."""

    def __init__(self, api: api_client.AsyncClient, pod_dir: str) -> None:
        self.api = api
        self.pod_dir = pod_dir

    async def prepare(self, pod: Mapping[str, Any]) -> Mapping[str, str]:
        made = await volumes.prepare(pod, pod_dir=self.pod_dir, client=self.api)
        return {name: v.host_path for name, v in made.items()}

    async def cleanup(self, pod: Mapping[str, Any]) -> None:
        volumes.teardown(str(pod["metadata"]["uid"]), pod_dir=self.pod_dir)


def env_hook(api: api_client.AsyncClient, node_ip: str) -> W.EnvResolver:
    async def resolve(pod: Mapping[str, Any], container: Mapping[str, Any],
                      ) -> list[tuple[str, str]]:
        return await envmod.resolve(pod, container, client=api, node_ip=node_ip,
                                    pod_ip=str((pod.get("status") or {}).get("podIP") or ""))
    return resolve


async def run(args: argparse.Namespace) -> None:
    config = api_client.load_config(args.config)
    api = api_client.AsyncClient(config)
    cri = cric.CRIClient(args.runtime_socket)
    log_root = os.path.join(args.root, "pods")
    os.makedirs(log_root, exist_ok=True)
    try:
        version = await cri.version()
        runtime_version = f"{version.runtime_name}://{version.runtime_version}"
        ip = args.node_ip or N.local_ip_towards(config.server)
        port = int(args.listen.rpartition(":")[2]) if args.listen else 0
        facts = N.probe_host(internal_ip=ip, runtime_version=runtime_version,
                             agent_port=port)
        reg = N.NodeRegistration(api, args.node_name, facts,
                                 lambda: runtime_readiness(cri))
        node = await reg.register()
        lease = L.NodeLease(api, args.node_name,
                            node_uid=str((node.get("metadata") or {}).get("uid") or ""))
        relist = P.Relist(C.Runtime(cri))
        env = W.WorkerEnv(api=api, cri=cri, refresh=relist, writer=S.StatusWriter(api),
                          log_root=log_root, cgroup_parent=args.cgroup_parent, host_ip=ip,
                          runtime_name=version.runtime_name or "corral",
                          volumes=PodVolumes(api, os.path.join(args.root, "volumes")),
                          env=env_hook(api, ip))
        manager = P.PodManager(source=api, node_name=args.node_name, env=env, relist=relist)
        server = await serve_health(args.listen) if args.listen else None
        log.info("node %s: agent running (runtime %s)", args.node_name, runtime_version)
        try:
            await asyncio.gather(lease.run(), reg.run(), manager.run())
        finally:
            if server is not None:
                server.close()
    finally:
        await cri.close()
        await api.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("grpc").setLevel(logging.WARNING)
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
