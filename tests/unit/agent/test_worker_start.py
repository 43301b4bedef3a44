"""A pod's start in one sync: sandbox, then its containers, then a Running status, without
waiting for a relist between them; the start timeline is logged once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agent import worker as W
from runtime.service.cri import client as cric
from tests.unit.agent.test_worker_probes import Rig


@pytest.mark.parametrize(("fail_sandbox", "state", "started"), [
    pytest.param(False, W.PodState.RUNNING, True, id="sandbox-then-containers"),
    pytest.param(True, W.PodState.PENDING, False, id="sandbox-fails-no-retry-in-the-sync"),
])
def test_one_sync_starts_the_pod(tmp_path: Any, caplog: pytest.LogCaptureFixture,
                                 fail_sandbox: bool, state: W.PodState,
                                 started: bool) -> None:
    rig = Rig(str(tmp_path), {})
    runs = []
    real_run = rig.cri.run_pod_sandbox

    async def run_pod_sandbox(config: Any) -> str:
        runs.append(config)
        if fail_sandbox:
            raise cric.CRIError("RunPodSandbox", "UNKNOWN", "no network")
        return await real_run(config)

    rig.cri.run_pod_sandbox = run_pod_sandbox  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="corral.agent.worker")
    asyncio.run(rig.worker.sync())
    assert len(runs) == 1  # a failed sandbox waits for its retry time, not a tight loop
    assert rig.worker.state is state
    assert (("start", "app-0") in rig.cri.calls) is started
    if started:
        assert rig.status()["phase"] == "Running"
        assert rig.app()["state"].keys() == {"running"}
        timeline = [r.message for r in caplog.records if "after the agent saw it" in r.message]
        assert len(timeline) == 1
        assert "sandbox +" in timeline[0] and "started +" in timeline[0]
        asyncio.run(rig.worker.sync())  # a later sync logs no second timeline
        assert sum("after the agent saw it" in r.message for r in caplog.records) == 1
    else:
        assert rig.status()["phase"] != "Running"
        assert rig.worker._next_at > 0
