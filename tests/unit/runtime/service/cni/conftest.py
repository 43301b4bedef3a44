"""A fake CNI plugin host: real executables in a temp CNI_PATH that record the env and stdin
they were given (calls.jsonl) and answer as the test scripts them (<plugin>.json)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PLUGIN = f"""#!{sys.executable}
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
name = os.path.basename(__file__)
raw = sys.stdin.read()
conf = json.loads(raw) if raw.strip() else None
env = {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}}
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({{"plugin": name, "env": env, "stdin": conf,
                        "path_var": os.environ.get("PATH", "")}}) + "\\n")
script_path = os.path.join(here, name + ".json")
script = json.load(open(script_path)) if os.path.exists(script_path) else {{}}
cmd = env["CNI_COMMAND"]
step = script.get(cmd)
if step is not None:
    if "stdout_text" in step:
        sys.stdout.write(step["stdout_text"])
    elif "stdout" in step:
        json.dump(step["stdout"], sys.stdout)
    sys.stderr.write(step.get("stderr", ""))
    if step.get("sleep"):
        import time; time.sleep(step["sleep"])
    sys.exit(step.get("exit", 0))
if cmd == "VERSION":
    json.dump({{"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}},
              sys.stdout)
elif cmd == "ADD":
    prev = conf.get("prevResult") or {{"cniVersion": conf["cniVersion"], "interfaces": [],
                                      "ips": []}}
    prev["interfaces"] = prev.get("interfaces", []) + [
        {{"name": name + "-" + env["CNI_IFNAME"], "sandbox": env["CNI_NETNS"]}}]
    n = len(prev["interfaces"])
    prev["ips"] = prev.get("ips", []) + [
        {{"address": "10.9.0.%d/24" % (n + 1), "gateway": "10.9.0.1", "interface": n - 1}}]
    json.dump(prev, sys.stdout)
"""


@dataclass
class FakePlugins:
    bin: Path

    def add(self, *names: str) -> None:
        for name in names:
            p = self.bin / name
            p.write_text(PLUGIN)
            p.chmod(0o755)

    def script(self, name: str, command: str, **step: Any) -> None:
        """Make NAME answer COMMAND with STEP (stdout, stdout_text, stderr, exit, sleep)."""
        path = self.bin / f"{name}.json"
        current = json.loads(path.read_text()) if path.exists() else {}
        current[command] = step
        path.write_text(json.dumps(current))

    def calls(self) -> list[dict[str, Any]]:
        log = self.bin / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def sequence(self) -> list[tuple[str, str]]:
        return [(c["plugin"], c["env"]["CNI_COMMAND"]) for c in self.calls()]


@pytest.fixture
def plugins(tmp_path: Path) -> FakePlugins:
    d = tmp_path / "bin"
    d.mkdir()
    os.chmod(d, 0o755)
    return FakePlugins(d)
