"""The renewal rules (fake clock), keep_leading over a scripted store, TermStore, and a lost
lease won straight back keeping the same work running."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from controlplane import leader, leaderlease
from controlplane.leader import TermStore
from controlplane.leaderlease import Lost, Renewal, Timing
from controlplane.storage import Fence, Fenced, InMemoryStore, NotFound, Unavailable

T = Timing(lease_duration=10, renew_deadline=8, retry_period=2)


@pytest.mark.parametrize(("now", "in_flight", "want"), [
    pytest.param(1.0, 0, None, id="fresh"),
    pytest.param(7.9, 0, None, id="before-the-renew-deadline"),
    pytest.param(8.0, 0, Lost.DEADLINE, id="renew-deadline-nothing-in-flight"),
    pytest.param(9.5, 1, None, id="renew-deadline-but-a-slow-attempt-may-still-succeed"),
    pytest.param(10.0, 1, Lost.EXPIRED, id="expired-even-with-an-attempt-in-flight"),
])
def test_verdict(now: float, in_flight: int, want: Lost | None) -> None:
    assert Renewal(T, 0.0).verdict(now, in_flight=in_flight) is want


@pytest.mark.parametrize(("sent", "ttl", "want_expires"), [
    pytest.param(2.0, 10, 12.0, id="renewed-from-the-send-time-not-the-answer"),
    pytest.param(7.5, 10, 17.5, id="slow-answer-within-the-ttl-counts"),
    pytest.param(-1.0, 10, 10.0, id="late-answer-to-an-older-attempt-never-shortens"),
])
def test_success_extends_from_the_send_time(sent: float, ttl: int,
                                            want_expires: float) -> None:
    r = Renewal(T, 0.0)
    r.succeeded(sent=sent, ttl=ttl)
    assert r.expires == want_expires
    assert r.verdict(want_expires - 0.01, in_flight=1) is None


@pytest.mark.parametrize(("now", "may_start"), [
    pytest.param(2.0, True, id="before-the-renew-deadline"),
    pytest.param(8.0, False, id="no-new-attempt-after-the-renew-deadline"),
    pytest.param(11.0, False, id="expired"),
])
def test_attempts_start_until_the_renew_deadline(now: float, may_start: bool) -> None:
    assert Renewal(T, 0.0).may_start(now) is may_start


@pytest.mark.parametrize(("sent", "now", "useful"), [
    pytest.param(1.0, 9.0, True, id="unanswered-but-its-answer-would-extend"),
    pytest.param(0.0, 9.0, False, id="could-not-extend-past-the-current-expiry"),
    pytest.param(1.0, 11.0, False, id="sent-more-than-a-ttl-ago"),
])
def test_an_unanswered_attempt_counts_while_it_could_extend(sent: float, now: float,
                                                            useful: bool) -> None:
    assert Renewal(T, 0.0).useful(sent, now) is useful


@pytest.mark.parametrize(("kwargs", "message"), [
    pytest.param({"lease_duration": 0}, "lease_duration: must be > 0, got 0s", id="zero"),
    pytest.param({"renew_deadline": 10}, "renew_deadline: must be < lease_duration (10s), "
                 "got 10s", id="renew-not-below-lease"),
    pytest.param({"retry_period": 9}, "retry_period: must be < renew_deadline (8s), got 9s",
                 id="retry-not-below-renew"),
])
def test_timing_is_checked(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Timing(**kwargs)


def test_ttl_is_whole_seconds() -> None:
    assert Timing(lease_duration=2.5, renew_deadline=2, retry_period=1).ttl == 3


class Scripted(InMemoryStore):
    """keep_alive answers after DELAY seconds, or raises ERROR."""

    def __init__(self, *, delay: float = 0.0, error: Exception | None = None) -> None:
        super().__init__()
        self.delay, self.error, self.calls = delay, error, 0

    async def keep_alive(self, lease: int) -> int:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return SHORT.ttl


SHORT = Timing(lease_duration=2, renew_deadline=1.6, retry_period=0.4)


@pytest.mark.asyncio
async def test_slow_renewals_that_succeed_within_the_ttl_keep_the_lead() -> None:
    store = Scripted(delay=1.2)  # 3 retry periods, above the old 2 s-style deadlines' share
    keeper = asyncio.create_task(leaderlease.keep_leading(
        store, lease=1, timing=SHORT, granted=time.monotonic()))
    await asyncio.sleep(3 * SHORT.lease_duration)
    assert not keeper.done()
    assert store.calls >= 5
    keeper.cancel()
    await asyncio.gather(keeper, return_exceptions=True)


@pytest.mark.parametrize(("store", "want", "within"), [
    pytest.param(Scripted(error=Unavailable("etcd down")), Lost.DEADLINE, SHORT.renew_deadline,
                 id="failing-renewals-step-down-at-the-renew-deadline"),
    pytest.param(Scripted(delay=60), Lost.EXPIRED, SHORT.lease_duration,
                 id="hanging-renewal-stops-at-expiry"),
    pytest.param(Scripted(error=NotFound("lease 1")), Lost.GONE, SHORT.retry_period,
                 id="gone-lease-stops-at-once"),
])
@pytest.mark.asyncio
async def test_lost(store: Scripted, want: Lost, within: float) -> None:
    start = time.monotonic()
    got = await asyncio.wait_for(leaderlease.keep_leading(
        store, lease=1, timing=SHORT, granted=start), 5)
    took = time.monotonic() - start
    assert got is want
    assert within - 0.05 <= took <= within + 0.5, f"took {took:.2f} s"


@pytest.mark.asyncio
async def test_a_stalled_main_loop_lets_the_lease_go() -> None:
    start = time.monotonic()
    got = await asyncio.wait_for(leaderlease.keep_leading(
        Scripted(), lease=1, timing=SHORT, granted=start,
        alive=lambda now: now - start < 0.5), 3)
    assert got is Lost.STALLED
    assert time.monotonic() - start < SHORT.lease_duration


@pytest.mark.asyncio
async def test_term_store_holds_writes_until_the_next_fence() -> None:
    store = InMemoryStore()
    key = leader.leader_key("c")
    first = Fence(key, await store.create(key, b"me"))
    writes = TermStore(store)
    writes.resume(first)
    await writes.create("/registry/pods/ns/a", b"1")
    writes.suspend()
    await store.delete(key)  # the lease is gone ...
    held = asyncio.create_task(writes.create("/registry/pods/ns/b", b"2"))
    await asyncio.sleep(0.1)
    assert not held.done()
    second = Fence(key, await store.create(key, b"me"))  # ... and won straight back
    writes.resume(second)
    await asyncio.wait_for(held, 1)
    assert (await store.get("/registry/pods/ns/b"))[0] == b"2"


@pytest.mark.asyncio
async def test_term_store_retries_a_fenced_write_under_the_new_fence() -> None:
    store = InMemoryStore()
    key = leader.leader_key("c")
    writes = TermStore(store)
    writes.resume(Fence(key, await store.create(key, b"me")))
    await store.delete(key)  # expired before the election loop noticed
    late = asyncio.create_task(writes.create("/registry/pods/ns/late", b"x"))
    await asyncio.sleep(0.1)
    assert not late.done()  # refused by etcd, now held
    writes.resume(Fence(key, await store.create(key, b"me")))
    await asyncio.wait_for(late, 1)
    await store.get("/registry/pods/ns/late")


@pytest.mark.asyncio
async def test_term_store_refuses_once_deposed() -> None:
    store = InMemoryStore()
    key = leader.leader_key("c")
    writes = TermStore(store)
    writes.resume(Fence(key, await store.create(key, b"me")))
    writes.suspend()
    held = asyncio.create_task(writes.create("/registry/pods/ns/x", b"x"))
    await asyncio.sleep(0.05)
    writes.depose()
    with pytest.raises(Fenced, match="no longer the leader"):
        await asyncio.wait_for(held, 1)
    with pytest.raises(NotFound):
        await store.get("/registry/pods/ns/x")


@pytest.mark.asyncio
async def test_a_lease_won_straight_back_keeps_the_same_work() -> None:
    store = InMemoryStore()
    writes = TermStore(store)
    started: list[Fence] = []
    changes: list[bool] = []
    running = asyncio.Event()

    async def work(fence: Fence) -> None:
        started.append(fence)
        running.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(leader.run_when_leader(
        store, component="c", identity="me", work=work, timing=SHORT, writes=writes,
        on_change=changes.append))
    try:
        await asyncio.wait_for(running.wait(), 2)
        first = writes.fence
        assert first is not None
        await store.revoke_lease(store._key_lease[first.key])  # etcd dropped the lease
        for _ in range(40):
            await asyncio.sleep(0.1)
            if writes.fence != first:
                break
        assert writes.fence is not None and writes.fence.revision > first.revision
        assert len(started) == 1, "the work was restarted"
        assert changes == [True]
        assert await leader.current_leader(store, "c") == "me"
        await writes.create("/registry/pods/ns/after", b"x")  # under the new fence
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert changes == [True, False]
    assert await leader.current_leader(store, "c") is None


@pytest.mark.asyncio
async def test_the_renewal_thread_renews_while_the_main_loop_is_blocked() -> None:
    made: list[Scripted] = []

    def factory() -> Scripted:
        made.append(Scripted())
        return made[-1]

    renewer = leaderlease.RenewalThread(factory, lease=1, timing=SHORT, granted=time.monotonic())
    waiting = asyncio.create_task(renewer.wait())
    await asyncio.sleep(0.1)
    time.sleep(2 * SHORT.lease_duration)  # the main loop does nothing at all meanwhile
    assert made[0].calls >= 8  # every retry period, from the thread
    assert not waiting.done()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert not any(t.name.startswith("lease-") for t in threading.enumerate())


@pytest.mark.asyncio
async def test_the_renewal_thread_reports_a_lost_lease() -> None:
    renewer = leaderlease.RenewalThread(lambda: Scripted(error=NotFound("lease 1")), lease=1,
                                        timing=SHORT, granted=time.monotonic())
    assert await asyncio.wait_for(renewer.wait(), 3) is Lost.GONE


@pytest.mark.asyncio
async def test_the_renewal_thread_lets_go_of_a_stalled_loop() -> None:
    renewer = leaderlease.RenewalThread(Scripted, lease=1, timing=SHORT,
                                        granted=time.monotonic(), stall_limit=0.5)
    waiting = asyncio.create_task(renewer.wait())
    await asyncio.sleep(0.1)
    time.sleep(1.0)  # longer than the stall limit, shorter than the lease
    assert await asyncio.wait_for(waiting, 3) is Lost.STALLED
