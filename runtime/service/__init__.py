"""corral's node runtime service (`corral-runtimed`): a containerd-like daemon.

Planned flow, top to bottom (each box is a package under ``runtime/service``)::

    agent / crictl ──CRI runtime.v1 gRPC (unix socket)──► cri/   (pass-through servicers;
                                                                 errors -> gRPC codes here only)
        │ PullImage                       │ Create/StartContainer
        ▼                                 ▼
    images/ ──registry client──► content/  (blobs by digest)     containers/ (metadata)
        │ unpack layers                                          │ bundle = image config + spec
        ▼                                                        ▼
    snapshots/ (overlayfs, chain IDs) ──rootfs──────────────► shim/ (one per container,
                                                                 outlives the daemon)
                                                                 │ runc command line
                                                                 ▼
                                                             corral-runc (runtime/oci)

Built so far:

- ``content``: the content store;
- ``images``: the registry client and pull, the image store, unpacking into snapshots,
  import/export of OCI-layout and `docker save` tarballs; ``gc.py``: mark and sweep of
  content and snapshots;
- ``diff``: safe layer application and chain IDs; ``snapshots``: overlay and native
  snapshotters;
- ``cni``: network namespaces and the CNI plugin protocol;
- ``containers``, ``bundle.py``, ``shim`` and ``tasks.py``: container metadata, the OCI
  bundle from image config + container config, one detached shim per container, and the
  task manager that reconnects to them after a restart (``taskstats.py``: a task's usage
  from its cgroup files);
- ``cri``: the CRI runtime.v1 wire format and a client, proven against containerd's CRI
  plugin.

Nothing here imports anything above ``runtime``.
"""
