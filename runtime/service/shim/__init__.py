"""Shims: one small process per container that holds it while daemons come and go.

    TaskManager (tasks.py) ── client.launch(state_dir, spec) ──► main.py (detached, subreaper)
          │                                                       │ runtime create/start/
          │  client.ShimClient.call(op) over state_dir/shim.sock  │ kill/exec/delete
          └──────────── protocol.py (length-prefixed JSON) ───────┘
                                                                  │ init exit -> exit.json
                                                                  │ stdio -> CRI log file
                                                                  │ stdin held, "attach"

    forkserver.py  forks every shim from one small process that imported the shim and
                   (inproc.py) corral-runc's modules once, so shims share those pages
    inproc.py      corral-runc run in a forked child of the shim instead of exec'd: no
                   interpreter start per runtime call; runc and crun are exec'd
    stdio.py       the container's stdin (a pipe) or terminal (the pty master from
                   --console-socket), held by the shim, a copy handed to each "attach"
    execs.py       exec sessions: `runtime exec --detach`, the output collected from its
                   pipes, killed at its deadline, one reply when it exits
    holder.py      once the container runs, main.py execs corral-shim-holder (holder.c,
                   built by scripts/make_launchers.py): same pid and fds, same protocol,
                   ~60 kB PSS instead of a forked interpreter's ~1.5 MB
    runcall.c      the holder's corral-runc calls (exec, delete, start, kill --all) sent
                   to the fork server's runtime socket, which forks the preloaded CLI;
                   the launcher exec'd when no fork server answers (the daemon is down)

This package module imports nothing, so the shim process loads only what it needs.
"""
