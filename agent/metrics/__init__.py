"""The agent's /metrics: cAdvisor-compatible container metrics and the agent's own.

    Prometheus ──GET /metrics──► server.MetricsServer (asyncio)
                                     │ renders the registry in a worker thread
                                     ▼
        agent.REGISTRY ── agent.METRICS: pod start latency, CRI call durations, pod workers
                       ── process_* of this process
                       ── cadvisor.CadvisorCollector(source)      (registered by the agent)
                              │ per scrape: source.containers() -> ContainerInfo list
                              ▼
                          cgroups.CgroupReader.read(cgroup_path)  v1 / hybrid / v2 files
                          cgroups.read_interfaces(pid)            /proc/<pid>/net/dev

Wiring, in the agent core:

    registry = agent.REGISTRY
    registry.register(CadvisorCollector(source))   # source: the pod workers' containers
    server = MetricsServer(registry, host=listen_host, port=metrics_port)
    await server.start()
"""
