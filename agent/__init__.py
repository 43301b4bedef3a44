"""corral-agent: the kubelet of corral. It turns the pods bound to its node into
containers through CRI, and reports back.

    corral-agent --config node.conf --node-name n1 --runtime-socket /run/corral/cri.sock

    main.py   ─► node.py    register the Node (capacity from /proc + cgroups, addresses,
             │              nodeInfo via CRI Version, labels); status every 30 s
             ├─► lease.py   Lease corral-node-lease/<node>, renewTime every 10 s
             └─► pods.py    list+watch pods with spec.nodeName=<node>
                    │            one relist of the runtime (cri.Runtime.observe), shared
                    ▼
                 worker.py  one PodWorker per pod: PENDING -> INITIALIZING -> RUNNING ->
                    │       COMPLETED; TERMINATING -> TERMINATED (explicit table)
                    ├─► cri.py     pod spec -> PodSandboxConfig / ContainerConfig
                    ├─► probes.py  liveness/readiness/startup probers per pod; a failed
                    │              one asks for a Kill(kind, message); one probe (exec,
                    │              httpGet, tcpSocket) is probecheck.py's
                    └─► status.py  phase, conditions, containerStatuses -> batched
                                   merge patches of pods/status, only when changed

Each pod gets a cgroup of its own under its QoS tier (qos.py, over cgroupfs.py), made
before its sandbox; node.py holds the tiers' parent to the node's allocatable.

Containers carry the pod's uid/namespace/name and their own name as labels, so a
restarted agent adopts what runs and restarts nothing. Hooks for volumes, env sources
and probes are the small Protocols in worker.py.
"""
