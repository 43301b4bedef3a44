"""The controllers: client-go's pattern, over a `Cluster` (LocalClient or AsyncClient).

    etcd ─► apiserver watch ─► Informer (list + watch cache; one per resource, shared
                                 │       through Informers; indexes "owner", "orphan",
                                 │       "namespace", ... so a sync reads only its own)
                                 │ add/update/delete handlers: enqueue "ns/name" only
                                 ▼
                               WorkQueue (dedupe, one worker per key at a time,
                                 │        rate-limited retries, add_after)
                                 ▼
                               Controller.sync(key)  read caches ─► plan(...) (pure)
                                 │                   ─► writes through the Cluster
                                 ▼
                               ControllerManager starts informers, waits for sync,
                               runs every controller's workers, stops them all

Modules: workqueue, informer, controller (base, Expectations, manager), podutil (shared
pure helpers), replicaset, rollout (pure Deployment arithmetic), deployment,
garbagecollector, namespace; job, daemonset, nodelifecycle and endpoints build on the
same framework.
"""
