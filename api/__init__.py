"""corral's resource model, shared by every component (clusterctl, controlplane, agent).

So far: the schema nodes every kind will be written in (`schema.py`: validation that
reports every error with its field path, defaults, explain) and label and field selectors
(`selectors.py`). Next: ObjectMeta and the kinds themselves, and the YAML/JSON codec (see
the notes on issue 4)."""
