"""The API server: every read and write of cluster state goes through here.

::

    gRPC (TLS) ──► authn ──► authz ──► handler (create/get/list/watch/update/patch/apply/delete)
                                          │ admission: defaults, validation, namespace exists,
                                          │            immutable fields
                                          ▼
                                       Store (etcd) ──► watch cache ──► watchers
"""
