"""Shims: one small process per container that holds it while daemons come and go.

    TaskManager (tasks.py) ── client.launch(state_dir, spec) ──► main.py (detached, subreaper)
          │                                                       │ runtime create/start/
          │  client.ShimClient.call(op) over state_dir/shim.sock  │ kill/exec/delete
          └──────────── protocol.py (length-prefixed JSON) ───────┘
                                                                  │ init exit -> exit.json
                                                                  │ stdio -> CRI log file

This package module imports nothing, so the shim process loads only what it needs.
"""
