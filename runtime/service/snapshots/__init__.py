"""Snapshots: the filesystems containers run on, stacked from image layers (containerd's
``snapshots``).

    unpack an image (diff_ids d1..dn):
        for i in 1..n:  chain = chain_id(d1..di)                       (diff/chain.py)
            if stat(chain) exists: continue           two images share the layer: done once
            mounts = prepare("extract-<chain>", parent=chain(d1..di-1))
            apply_layer(blob, *layer_target(mounts))                   (diff/apply.py)
            commit(chain, "extract-<chain>")          now immutable, named by its chain ID

    run a container:
        mounts = prepare("<container id>", parent=chain(d1..dn))       writable rootfs
        Mount.mount(bundle/rootfs) ... container ... unmount; remove("<container id>")

    interface.py  Snapshotter Protocol, Kind + TRANSITIONS, Mount, Info, Usage, errors
    metadata.py   the sqlite3 metadata (one db per root) and the shared directory logic
    overlay.py    OverlaySnapshotter: one layer dir per snapshot, stacked by overlayfs
    native.py     NativeSnapshotter: a full copy per snapshot (no overlayfs needed)
"""

from runtime.service.snapshots.interface import (
    TRANSITIONS,
    AlreadyExists,
    FailedPrecondition,
    Info,
    InvalidArgument,
    Kind,
    Mount,
    NotFound,
    Op,
    SnapshotError,
    Snapshotter,
    Usage,
    check_transition,
    is_mountpoint,
    layer_target,
    mount_all,
    unmount,
    unmount_all,
)
from runtime.service.snapshots.metadata import MetaSnapshotter, MetaStore, Record, disk_usage
from runtime.service.snapshots.native import NativeSnapshotter, copy_tree
from runtime.service.snapshots.overlay import OverlaySnapshotter, overlay_supported

__all__ = [
    "TRANSITIONS",
    "AlreadyExists",
    "FailedPrecondition",
    "Info",
    "InvalidArgument",
    "Kind",
    "MetaSnapshotter",
    "MetaStore",
    "Mount",
    "NativeSnapshotter",
    "NotFound",
    "Op",
    "OverlaySnapshotter",
    "Record",
    "SnapshotError",
    "Snapshotter",
    "Usage",
    "check_transition",
    "copy_tree",
    "disk_usage",
    "is_mountpoint",
    "layer_target",
    "mount_all",
    "overlay_supported",
    "unmount",
    "unmount_all",
]
