"""The corral-node command: start the runtime service, then the agent on its socket.

    parse flags: the agent's, and the runtime service's as --runtime-root/-state/-socket/
    -config (the agent's --config and --root keep their meaning; --runtime-socket is both
    where the runtime serves and where the agent connects)
        │  runtime config invalid ─► exit 2 ("corral-node: FILE: field: message")
        ▼
    daemon.start(cfg)  ── CRI serving on cfg.socket ──►  agent.run(args) as a task
        │
        + trim_heap: malloc_trim every 30 s (freed C heap back to the kernel)
    SIGTERM/SIGINT ─► cancel the agent (it closes its clients), then stop the runtime
                      service (stop serving, close the stores); containers keep running
    the agent fails ─► the runtime service stops too, exit 1 (2 for a config error), so
                      that a supervisor restarts the node as one
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import signal
import sys

from agent import main as agent_main
from api import client as api_client
from runtime.service import daemon
from runtime.service.config import ConfigError, DaemonConfig

log = logging.getLogger("corral.node")

PREFIX = "runtime-"
TRIM_EVERY = 30.0  # seconds between two malloc_trim calls (trim_heap)


async def trim_heap(every: float) -> None:
    """Hand the C heap's free pages back to the kernel every EVERY seconds (glibc's
    malloc_trim(0), about 0.5 ms here). An image pull's buffers (gzip, tar, HTTP: in the CRI
    executor's threads) are freed but stay resident in malloc's arenas; measured with one
    pull on an idle node: 60.5 -> 58.0 MB RSS; an idle node that pulled nothing, unchanged.
    MALLOC_ARENA_MAX=2 measured no better than the default (51.2 vs 51.4 MB idle, 60.4 vs
    60.5 after a pull), so the launcher does not set it."""
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim this way
        return
    while True:
        await asyncio.sleep(every)
        malloc_trim(0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="corral-node", description="One process per node: the runtime service "
        "(CRI on --runtime-socket, as corral-runtimed serves it) and the agent (as "
        "corral-agent), which reaches the runtime only through that socket.",
        epilog="The runtime service's own flags take the prefix --runtime- where they "
        "would collide with the agent's (--config: the node's credentials; --root: the "
        "agent's state): corral-runtimed --root/--state/--socket/--config are "
        "--runtime-root/--runtime-state/--runtime-socket/--runtime-config here.")
    agent_main.add_arguments(p, runtime_socket=False)
    daemon.add_arguments(p, prefix=PREFIX)
    return p.parse_args(argv)


async def host(args: argparse.Namespace, cfg: DaemonConfig) -> int:
    """Run the runtime service and the agent until a signal; the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    serving = await daemon.start(cfg)
    rc = 0
    try:
        args.runtime_socket = cfg.socket
        trim = asyncio.create_task(trim_heap(TRIM_EVERY), name="trim")
        agent = asyncio.create_task(agent_main.run(args), name="agent")
        stopping = asyncio.create_task(stop.wait(), name="signal")
        await asyncio.wait({agent, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        trim.cancel()
        if agent.done():
            err = agent.exception()
            if isinstance(err, api_client.ConfigError):
                print(f"corral-node: {err}", file=sys.stderr)
                rc = 2
            else:
                log.error("node %s: the agent ended: %r", args.node_name, err)
                rc = 1
        else:
            agent.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await agent
    finally:
        await serving.stop()
    log.info("node %s: stopped; containers keep running", args.node_name)
    return rc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    agent_main.setup_logging(args.log_level)
    try:
        cfg = daemon.configure(args, prefix=PREFIX)
    except ConfigError as e:
        print(f"corral-node: {e}", file=sys.stderr)
        return 2
    return asyncio.run(host(args, cfg))


if __name__ == "__main__":
    sys.exit(main())
