"""corral's resource model, shared by every component (clusterctl, controlplane, agent).

So far: label and field selectors (`selectors.py`). Next: the one schema source for the
Kubernetes-shaped kinds, from which validation, defaults, `clusterctl explain` and the
YAML/JSON codec follow (see the notes on issue 4)."""
