"""corral-ctr: a debugging CLI for corral-runtimed, in the spirit of ctr and crictl.

::

    corral-ctr [--socket PATH | $CORRAL_RUNTIME_SOCKET] [-n NAMESPACE] VERB ...
        main.py      global flags, the verb table, error -> exit code (one place)
        conn.py      a blocking gRPC channel; every call carries ``containerd-namespace``
        fast.py      ``run`` over the daemon's private socket PATH.ctr (no gRPC imported)
        <verb>_cmd.py  pull images rmi import run ps logs exec stop rm info

Everything goes over CRI (runtime.v1) except ``import``, which has no CRI call: it is
sent as a PullImage of ``corral-import:<absolute tarball path>`` that the daemon answers
only for that prefix (a private use of CRI's call, named here). ``run`` makes a standalone
sandbox (annotation io.corral.sandbox/standalone: no pause container, no pod network, like
``ctr run``) and one container in it, then waits for its exit and prints its log; it
does so in one call over PATH.ctr (ctr/fast.py, served by runtime/service/ctrsock.py)
when the daemon serves it, and over CRI otherwise.
"""
