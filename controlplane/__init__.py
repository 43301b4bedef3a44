"""The control plane: the only writer of cluster state, and the API everyone else watches.

::

    clusterctl / agents ──gRPC──► apiserver (authn, authz, admission, codec)
                                      │ create/get/list/update/delete/watch (bytes + revision)
                                      ▼
                                  storage (Store protocol: EtcdStore, InMemoryStore)
                                      │ etcd v3 KV + Watch (grpc.aio)
                                      ▼
                                    etcd  ◄── scheduler, controllers (through the apiserver)

The storage layer knows keys, bytes and revisions and nothing about objects; the API
server turns objects into bytes and an etcd mod revision into ``metadata.resourceVersion``.
"""
