"""corral-runtimed: the node's runtime daemon (CRI runtime.v1 on a unix socket).

::

    corral-runtimed [--root DIR] [--state DIR] [--socket PATH] [--config FILE]
        config.load(FILE) <- flags            (exit 2 with "FILE: field: message")
        Node(config): content, overlay snapshots, images, tasks (reconnect to every shim),
                      sandboxes (CNI), the CRI service, events
        gRPC asyncio server on SOCKET         SIGTERM/SIGINT: stop serving, leave containers
        streaming server on stream_address    exec/attach/port-forward URLs (streaming.py)
        SOCKET.ctr: corral-ctr's `run` in one call (ctrsock.py)
        shims forked by a single-threaded helper (shim/forkserver.py)

start(cfg) -> Serving is all of it but the signals: corral-node (nodehost/) calls it to host
this daemon in one process with the agent, under the flags --runtime-root/-state/-socket/
-config (add_arguments(prefix=), configure(prefix=)).

Several daemons run side by side when each has its own root, state and socket. The
containers are children of their shims, so stopping (or kill -9 of) the daemon leaves them
running; the next daemon on the same state dir finds them again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from grpc import aio  # type: ignore[import-untyped]

from runtime.service import sandboxes as S
from runtime.service.cni.netns import DEFAULT_ROOT as NETNS_ROOT
from runtime.service.config import ConfigError, DaemonConfig, load, with_flags
from runtime.service.content import FileContentStore
from runtime.service.cri.image_servicer import ImageServicer
from runtime.service.cri.runtime_servicer import RuntimeServicer
from runtime.service.cri.server import make_server, tenant_of
from runtime.service.cri.service import SNAPSHOTTER, PauseContainers, Service
from runtime.service.ctrsock import PrivateServer, Runner
from runtime.service.events import EventBus
from runtime.service.images.service import ImageService
from runtime.service.nsholder import PinnedNamespaces
from runtime.service.snapshots import OverlaySnapshotter
from runtime.service.streaming import StreamServer
from runtime.service.tasks import TaskManager

log = logging.getLogger("corral.runtimed")


class Node:
    """Every local service of one daemon, wired together."""

    def __init__(self, cfg: DaemonConfig, *, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        for d in (cfg.root, cfg.state):
            os.makedirs(d, mode=0o711, exist_ok=True)
        self.bus = EventBus(loop)
        self.content = FileContentStore(os.path.join(cfg.root, "content"))
        self.snapshotter = OverlaySnapshotter(os.path.join(cfg.root, "snapshots", SNAPSHOTTER))
        self.images = ImageService(os.path.join(cfg.root, "images"), content=self.content,
                                   snapshotters={SNAPSHOTTER: self.snapshotter},
                                   default_snapshotter=SNAPSHOTTER,
                                   default_registry=cfg.default_registry or None)
        runtimes = cfg.runtime_commands()
        self.tasks = TaskManager(cfg.state, runtimes=runtimes, cgroup_parent=cfg.cgroup_parent)
        self.service = Service(root=cfg.root, state=cfg.state, images=self.images,
                               content=self.content, snapshotter=self.snapshotter,
                               tasks=self.tasks, bus=self.bus, runtimes=runtimes,
                               default_runtime=cfg.default_runtime,
                               cgroup_parent=cfg.cgroup_parent)
        network = S.CNINetwork(conf_dir=cfg.cni.conf_dir, bin_dirs=cfg.cni.bin_dirs,
                               cache_dir=cfg.cni.cache_dir or os.path.join(cfg.state, "cni"),
                               netns_dir=cfg.cni.netns_dir or NETNS_ROOT)
        # the pinned namespaces and shm of pods without a pause are runtime state (beside
        # the tasks), the sandbox records persistent (under root)
        self.sandboxes = S.SandboxManager(
            cfg.root, network=network,
            pause=PauseContainers(self.service, sandbox_image=cfg.sandbox_image),
            holder=PinnedNamespaces(os.path.join(cfg.state, "sandboxes")),
            drop_infra=cfg.drop_infra_container)
        self.service.recover()
        info = asdict(cfg)
        for r in info["registries"].values():
            r["password"] = "***" if r["password"] else ""
        info["sandboxImage"] = cfg.sandbox_image
        self.streams = StreamServer(cfg.stream_address,
                                    scratch_dir=os.path.join(cfg.state, "streams"),
                                    token_ttl=cfg.stream_token_ttl)
        self.runtime = RuntimeServicer(self.service, self.sandboxes, self.bus,
                                       tenant_of=tenant_of, config_info=info,
                                       streams=self.streams)
        self.image_servicer = ImageServicer(self.service, cfg, tenant_of=tenant_of)

    def close(self) -> None:
        self.bus.close()
        self.service.close()
        self.images.close()
        self.tasks.close()


def add_arguments(p: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """The daemon's flags (--root --state --socket --config), named --PREFIXroot etc.
    (corral-node, which hosts the daemon next to the agent, uses prefix "runtime-")."""
    p.add_argument(f"--{prefix}root", help="persistent data (images, snapshots, metadata)")
    p.add_argument(f"--{prefix}state", help="runtime state (tasks, shims)")
    p.add_argument(f"--{prefix}socket",
                   help="the CRI socket (default /run/corral/runtime.sock)")
    p.add_argument(f"--{prefix}config", help="TOML config file; flags override it")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="corral-runtimed", description=__doc__.split("\n")[0])
    add_arguments(p)
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def configure(args: argparse.Namespace, *, prefix: str = "") -> DaemonConfig:
    """The config file named by --PREFIXconfig, with --PREFIXroot/state/socket over it."""
    flags = {k: getattr(args, f"{prefix}{k}".replace("-", "_"))
             for k in ("config", "root", "state", "socket")}
    cfg = load(flags["config"]) if flags["config"] else DaemonConfig()
    return with_flags(cfg, root=flags["root"], state=flags["state"], socket=flags["socket"])


class Serving:
    """A started daemon: CRI on its socket, streaming, the private corral-ctr socket.
    stop() ends them all and leaves the containers to their shims."""

    def __init__(self, cfg: DaemonConfig, node: Node, server: aio.Server,
                 private: PrivateServer | None) -> None:
        self.cfg = cfg
        self.node = node
        self.server = server
        self.private = private

    async def stop(self) -> None:
        self.node.bus.close()
        if self.private is not None:
            self.private.close()
        await self.server.stop(grace=2)
        await self.node.streams.close()
        await asyncio.to_thread(self.node.close)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.cfg.socket)


async def start(cfg: DaemonConfig) -> Serving:
    """Build the Node and serve CRI on cfg.socket; returns once the socket accepts."""
    loop = asyncio.get_running_loop()
    # Blocking CRI work runs in these threads; a container start holds one for its shim's
    # start-up, so the default (cores + 4) would queue parallel starts behind each other.
    # Threads start on demand: an idle daemon holds none of them.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="cri"))
    node = await asyncio.to_thread(Node, cfg, loop=loop)
    os.makedirs(os.path.dirname(cfg.socket), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(cfg.socket)  # a socket left by a daemon that was killed
    await node.streams.start()
    server = make_server(cfg.socket, runtime=node.runtime, images=node.image_servicer)
    await server.start()
    private: PrivateServer | None = None
    try:
        private = PrivateServer(cfg.socket, Runner(node.service, node.sandboxes))
        private.start()
    except OSError as e:  # e.g. a path past sun_path's limit: corral-ctr then uses CRI
        log.warning("no private corral-ctr socket next to %s: %s", cfg.socket, e)
    log.info("serving CRI on %s (root %s, state %s), streaming on %s:%d", cfg.socket,
             cfg.root, cfg.state, node.streams.host, node.streams.port)
    return Serving(cfg, node, server, private)


async def serve(cfg: DaemonConfig) -> None:
    serving = await start(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await serving.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = configure(args)
    except ConfigError as e:
        print(f"corral-runtimed: {e}", file=sys.stderr)
        return 2
    asyncio.run(serve(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
