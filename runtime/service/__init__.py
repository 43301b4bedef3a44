"""corral's node runtime service (`corral-runtimed`): a containerd-like daemon.

Planned flow, top to bottom (each box is a package under ``runtime/service``)::

    agent / crictl ──CRI runtime.v1 gRPC (unix socket)──► cri/   (pass-through servicers;
                                                                 errors -> gRPC codes here only)
        │ PullImage                       │ Create/StartContainer
        ▼                                 ▼
    images/ ──registry client──► content/  (blobs by digest)     containers/ (metadata)
        │ unpack layers                                          │ bundle = image config + spec
        ▼                                                        ▼
    snapshots/ (overlayfs, chain IDs) ──rootfs──────────────► shims/ (one per container,
                                                                 outlives the daemon)
                                                                 │ runc command line
                                                                 ▼
                                                             corral-runc (runtime/oci)

Built so far: ``content`` (the content store), ``images`` (the registry client,
pull, the image store, unpacking into snapshots, import/export of OCI-layout and
`docker save` tarballs), ``gc.py`` (mark and sweep of content and snapshots), ``diff`` (safe layer application, chain IDs), ``snapshots`` (overlay and native
snapshotters) and ``cni`` (network namespaces and the CNI plugin protocol). Nothing here imports anything above ``runtime``.
"""
