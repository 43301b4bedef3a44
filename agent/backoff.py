"""CrashLoopBackOff: when an exited container may be restarted (kubelet's schedule).

    exit #1 ──► restart at once
    exit #2 ──► 10 s, then 20 s, 40 s, ... capped at 5 min
    a run of >= 10 min resets the count (Backoff.reset_at, per container name)

``crash_delay`` is the pure schedule; ``Backoff`` keeps one pod's reset points and turns an
exited ContainerInfo into the epoch second at which it may start again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent import cri as C

BACKOFF_BASE = 10.0
BACKOFF_CAP = 300.0
BACKOFF_RESET = 600.0


def crash_delay(crashes: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
                ) -> float:
    """Seconds before restarting after the CRASHES-th exit since the last reset
    (kubelet: the first exit restarts at once, then 10 s, 20 s, ... up to 5 min)."""
    if crashes <= 1:
        return 0.0
    return float(min(cap, base * 2 ** (crashes - 2)))


@dataclass
class Backoff:
    """Per container name: the attempt at which counting restarts (after a clean run)."""

    base: float = BACKOFF_BASE
    cap: float = BACKOFF_CAP
    reset_after: float = BACKOFF_RESET
    reset_at: dict[str, int] = field(default_factory=dict)

    def restart_at(self, c: C.ContainerInfo) -> float:
        """When (epoch seconds) the exited container C may be restarted."""
        ran = (c.finished_at - c.started_at) / 1e9 if c.started_at else 0.0
        if ran >= self.reset_after:
            self.reset_at[c.name] = c.attempt
        crashes = c.attempt - self.reset_at.get(c.name, 0) + 1
        return c.finished_at / 1e9 + crash_delay(crashes, base=self.base, cap=self.cap)
