"""A local multi-node cluster on one machine: `clusterctl cluster up` / `cluster down`.

    state.plan(flags) ─► Plan (names, addresses: pure)
        │
    up.up(plan) ─ every step records what it made in State (DIR/state.json)
        │  make_network     bridge corral-nodes 10.99.0.1/24; per node: netns, veth, eth0 IP
        │  start_etcd       /usr/bin/etcd on 127.0.0.1
        │  start_registry   docker-registry on the bridge address; image.push_busybox()
        │  start_controlplane   corral-controlplane on the bridge address (TLS, leader)
        │  start_node       node certificate (corral-controlplane issue-node-cert),
        │                   corral-node in the node's netns (nsenter --net): the runtime
        │                   service (own root, state, socket, CNI bridge and pod subnet,
        │                   default registry) and the agent (--node-ip) in one process;
        │                   then the pause image pulled through its socket
        │    (split_node: start_runtimed, then start_agent: two processes per node)
        │  write_context    DIR/config, merged into ~/.corral/config (context.merge)
        │  wait_ready       N nodes Ready
        ▼  any error: down.teardown(state), then the error
    down.down(dir) ─ reads State, undoes it in order (processes by PID, leftovers in the
                     nodes' netns and cgroups, mounts, cgroups, netns, links, files)

`cluster init --data-dir DIR` (init.py) makes one controlplane's PKI and admin.conf
before its first start, through `python -m controlplane.apiserver.server init`.

clusterctl imports only `api`: the other components run as processes.
"""
