"""CRI ``runtime.v1`` on the wire: our .proto, its generated modules, and a client.

::

    agent ──CRIClient (client.py, asyncio)──► unix socket ──► RuntimeService / ImageService
                                                              ├─ corral-runtimed (ours)
                                                              └─ containerd 1.6 CRI plugin

``api.proto`` keeps CRI's package (``runtime.v1``), service and message names, and the
field numbers and types of every field it declares, so the gRPC method paths are
``/runtime.v1.RuntimeService/<Call>`` and either peer reads the other's messages; calls and
fields corral does not use are left out. ``api_pb2*.py`` are generated from it by
``scripts/gen_protos.sh`` (never edited by hand).

containerd 1.6.20 answers ``GetContainerEvents`` with UNIMPLEMENTED; ``CRIClient`` raises
``Unimplemented`` for it, and a caller falls back to polling ``ListContainers``.
"""
