"""corral's resource model, shared by every component (clusterctl, controlplane, agent).

`schema.py` holds the nodes every kind is written in (validation reporting every error
with its field path, defaults, explain); `selectors.py` label and field selectors;
`quantity.py` resource.Quantity; `meta.py` ObjectMeta. The kinds: `core.py` (Pod,
Service, Secret, Node, Event, Lease; the pod spec in `pod.py` and `container.py`),
`apps.py` (Deployment, ReplicaSet, DaemonSet), `batch.py` (Job), registered in `kinds.py`
with `validate(obj)` and `defaults(obj)`. Next: the YAML/JSON codec."""
