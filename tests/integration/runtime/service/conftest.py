"""Fixtures shared by the runtime-service integration tests.

    registry  a docker-registry on 127.0.0.1 (tests/support/registry.py), one per module
    busybox   the busybox image pushed to it: its reference, host:port/busybox:...
    rtd, cri  a corral-runtimed with CNI (test_runtimed.Runtimed) and a CRI client of it;
              a module that needs another daemon defines its own
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.runtime.service.test_runtimed import cri, rtd  # noqa: F401
from tests.support import containerd
from tests.support.registry import Registry


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with Registry() as reg:
        yield reg


@pytest.fixture(scope="module")
def busybox(registry: Registry) -> str:
    return containerd.push_busybox(registry)
