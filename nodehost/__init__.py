"""corral-node: one process per node, the runtime service and the agent in one interpreter.

    corral-node --config NODE.CONF --node-name NAME [agent flags]
                [--runtime-root DIR --runtime-state DIR --runtime-socket PATH
                 --runtime-config FILE]

    one interpreter, one asyncio event loop (main.py)
    ┌──────────────────────────────────────────────────────────────────────────────┐
    │ runtime.service.daemon.start(cfg)          agent.main.run(args)              │
    │   Node: images, snapshots, tasks, CNI        registration, lease, pod workers,│
    │   CRI gRPC server on SOCKET  ◄──── CRI ────  CRIClient(SOCKET): a grpc.aio     │
    │   streaming, SOCKET.ctr                      channel to the unix socket        │
    └──────────────────────────────────────────────────────────────────────────────┘
         │ shims forked by shim/forkserver.py (its own exec'd process, on first use)
         ▼
    containers (children of their shims: they outlive this process, SIGTERM or kill -9)

The agent talks to the runtime only through the CRI socket, as it does to containerd
when it runs alone (corral-agent --runtime-socket): nothing here hands it the daemon's
objects. The socket stays the public one, so corral-ctr and CRI clients reach it as they
reach corral-runtimed. This is the only package that imports both `agent` and `runtime`
(tests/unit/test_layers.py).

Why one process: two Python gRPC processes hold two interpreters, two copies of grpc's
core and of the CRI stubs; one holds them once. bench/node_footprint.py, idle node Ready,
no pods: corral-node 51 MB RSS, corral-runtimed + corral-agent 88 MB; a `cluster up` node
(node API, /metrics, the pause image pulled), idle: 60 MB against 101 MB.

One event loop, not a thread each: measured with 20 and 40 pods started at once, a loop
per thread held 0.3-2 MB more and started the pods no faster (the GIL serialises the two
anyway); one loop also leaves signals and shutdown order in one place.

The shim fork server: the runtime service forks shims from shim/forkserver.py, which
ForkServer starts with fork + exec of a fresh `python -I -S` (subprocess, no preexec_fn),
so nothing of this threaded process (gRPC's threads, the CRI executor) runs in it and no
lock another thread held is copied into it: it may start after threads exist, as in
corral-runtimed, on the first container start (or at once when the state dir holds
running tasks). Nothing in corral-node forks without exec.
"""
