"""OCI hooks: run each with the container state on stdin, its own env, and a timeout.

    prestart, createRuntime     runtime namespace, during create (after namespaces exist)
    createContainer             container namespaces, before pivot_root
    startContainer              container namespaces, just before the process starts
    poststart                   runtime namespace, after start (failure: logged only)
    poststop                    runtime namespace, after delete (failure: logged only)
"""

from __future__ import annotations

from . import _json
from .errors import SetupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def run(stage: str, config: dict[str, Any], state: dict[str, Any]) -> None:
    """Run every hook of STAGE in order; the first failure raises SetupError."""
    hooks = (config.get("hooks") or {}).get(stage) or []
    if not hooks:
        return
    import subprocess

    payload = _json.dumps(state).encode()
    for i, h in enumerate(hooks):
        args = h.get("args") or [h["path"]]
        env = dict(e.split("=", 1) for e in h.get("env") or [])
        where = f"hooks.{stage}[{i}] ({h['path']})"
        try:
            p = subprocess.run(args, executable=h["path"], input=payload, env=env,
                               capture_output=True,
                               timeout=h.get("timeout"), close_fds=True, check=False)
        except subprocess.TimeoutExpired:
            raise SetupError(f"{where}: timed out after {h['timeout']}s") from None
        except OSError as e:
            raise SetupError(f"{where}: {e.strerror}") from None
        if p.returncode != 0:
            detail = (p.stderr or p.stdout).decode(errors="replace").strip()
            raise SetupError(f"{where}: exit status {p.returncode}"
                             + (f": {detail}" if detail else ""))
