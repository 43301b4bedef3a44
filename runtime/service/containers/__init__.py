"""Containers: the metadata of every container, per namespace (containerd's
``containers`` service). A container is what to run; its task (tasks.py) is it running.

    ContainerStore(root/containers.db)
        create(Container)  -> AlreadyExists if (namespace, id) is taken
        get(ns, id)        -> NotFound
        list(ns, labels=)  -> only that namespace's containers, filtered by labels
        update(ns, id, labels=/spec=/...) -> bumps updated_at
        delete(ns, id)     -> NotFound

    store.py   sqlite3 (one db per root, WAL, one connection per thread)
"""

from runtime.service.containers.store import (
    AlreadyExists,
    Container,
    ContainerError,
    ContainerStore,
    NotFound,
)

__all__ = ["AlreadyExists", "Container", "ContainerError", "ContainerStore", "NotFound"]
