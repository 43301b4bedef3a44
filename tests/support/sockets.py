"""Is a unix socket served: the one check the test harnesses wait on (tests/support/node.py,
containerd.py's Containerd, test_runtimed.py's Runtimed). It imports nothing of the tests,
so any of them can import it without a cycle. (clusterctl/cluster/up.py keeps its own:
product code does not import tests.)"""

from __future__ import annotations

import socket


def serving(path: str) -> bool:
    """True when something accepts connections on the unix socket PATH now."""
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
        except OSError:  # missing, refused (nobody listening), not a socket
            return False
    return True
