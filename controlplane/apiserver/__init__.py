"""The API server: every read and write of cluster state goes through here.

::

    gRPC (TLS) ──► authn ──► authz ──► handler (create/get/list/watch/update/patch/apply/delete)
                                          │ admission: defaults, validation, namespace exists,
                                          │            immutable fields
                                          ▼
                                       Store (etcd) ──► watch cache ──► watchers

Speed: `--workers N` runs N such processes on one port (workers.py); JSON goes through
jsoncodec.py (orjson); an update at the version this process wrote skips the read
(objects.py); concurrent writes share one etcd Txn (storage/etcd.py's WriteBatcher).
"""
