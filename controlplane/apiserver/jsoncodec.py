"""The API server's JSON codec: api/jsoncodec.py, which the client shares, re-exported so
the server's modules keep importing ``controlplane.apiserver.jsoncodec``.

    loads(bytes) / dumps(obj) / copy(obj) / has_long_number(raw)   (see api/jsoncodec.py)

It has no server-only part: orjson where it gives the standard library's answer, the
standard library where it would not.
"""

from __future__ import annotations

from api.jsoncodec import copy as copy
from api.jsoncodec import dumps as dumps
from api.jsoncodec import has_long_number as has_long_number
from api.jsoncodec import loads as loads

__all__ = ["copy", "dumps", "has_long_number", "loads"]
