"""Parts of the idle node's footprint, each in a fresh interpreter (nothing imported earlier
hides a regression):

    /metrics loads prometheus_client on its first scrape, not before; /healthz without it
    trim_heap hands freed C heap (malloc'd, fragmented: what an image pull leaves) back
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

PROBE = textwrap.dedent("""
    import asyncio, sys
    from agent.main import metrics_registry
    from agent.metrics.cgroups import CgroupReader
    from agent.metrics.machine import read_machine
    from agent.metrics.server import MetricsServer
    from agent import stats

    async def get(port, path):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"GET {path} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode())
        body = await r.read()
        w.close()
        return body.split(b"\\r\\n", 1)[0].decode(), body

    async def main():
        async def pid_of(cid):
            return 0
        inv = stats.Inventory(pid_of=pid_of, cgroup_parent="/corral-none")
        made = metrics_registry(inv, CgroupReader(), read_machine())
        async with MetricsServer(made) as s:
            loaded = ["prometheus_client" in sys.modules]
            status, _ = await get(s.port, "/healthz")
            loaded.append("prometheus_client" in sys.modules)
            status2, body = await get(s.port, "/metrics")
            loaded.append("prometheus_client" in sys.modules)
            await asyncio.gather(get(s.port, "/metrics"), get(s.port, "/metrics"))
        print(loaded, status, status2, b"process_resident_memory_bytes" in body)

    asyncio.run(main())
""")


def test_prometheus_client_loads_with_the_first_scrape_only() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["[False,", "False,", "True]", "HTTP/1.1", "200", "OK",
                                  "HTTP/1.1", "200", "OK", "True"], out.stdout


TRIM = textwrap.dedent("""
    import asyncio
    from nodehost.main import trim_heap

    def rss():
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmRSS")) / 1024

    junk = [bytearray(4000) for _ in range(20000)]  # past pymalloc: malloc's heap
    keep = junk[::16]  # one block in 16 stays: the heap cannot shrink from its top
    del junk
    before = rss()

    async def main():
        task = asyncio.create_task(trim_heap(0.01))
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(main())
    print(round(before - rss(), 1), len(keep))
""")


def test_trim_heap_hands_freed_heap_pages_back() -> None:
    out = subprocess.run([sys.executable, "-c", TRIM], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    freed_mb, kept = out.stdout.split()
    assert int(kept) == 1250
    assert float(freed_mb) > 40, out.stdout  # of the ~75 MB freed
