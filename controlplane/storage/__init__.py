"""Cluster state storage: keys, bytes and revisions on etcd.

::

    apiserver ── Store protocol ──┬── EtcdStore ──grpc.aio──► etcd (KV: Range/Put/Txn/
              (interface.py)      │   (etcd.py)                     DeleteRange/Compact; Watch)
                                  └── InMemoryStore (memory.py): same semantics, no I/O
    keys.py        key layout, prefix and size checks      (pure)
    pagination.py  opaque continue tokens                  (pure)
    errors.py      the one error taxonomy both stores raise
    encryption.py  EncryptingStore: Secrets sealed with AES-GCM before they reach etcd,
                   key rotation by reencrypt()
    compaction.py  compact to the previous tick's revision every 5 minutes
    fenced.py      FencedStore: every write of a leader carries a compare on its leader key

A value's etcd mod revision is its resourceVersion: reads return it, update and delete
take it back for a compare-and-swap, list pages share one snapshot revision, and watches
resume after it until compaction makes it Gone.
"""

from controlplane.storage.errors import (
    AlreadyExists,
    Conflict,
    Fenced,
    Gone,
    InvalidArgument,
    NotFound,
    StorageError,
    TooLarge,
    TxnFailed,
    Unavailable,
)
from controlplane.storage.etcd import EtcdStore
from controlplane.storage.fenced import FencedStore
from controlplane.storage.interface import (
    MAX_TXN_OPS,
    Event,
    EventType,
    Fence,
    Item,
    ListResult,
    Store,
    Write,
)
from controlplane.storage.keys import MAX_OBJECT_BYTES, list_prefix, object_key
from controlplane.storage.memory import InMemoryStore

__all__ = [
    "MAX_OBJECT_BYTES",
    "MAX_TXN_OPS",
    "AlreadyExists",
    "Conflict",
    "EtcdStore",
    "Event",
    "EventType",
    "Fence",
    "Fenced",
    "FencedStore",
    "Gone",
    "InMemoryStore",
    "InvalidArgument",
    "Item",
    "ListResult",
    "NotFound",
    "StorageError",
    "Store",
    "TooLarge",
    "TxnFailed",
    "Unavailable",
    "Write",
    "list_prefix",
    "object_key",
]
