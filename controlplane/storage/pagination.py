"""Continue tokens: where the next page starts, and at which revision (pure functions).

A token is opaque base64 of ``{"v": 1, "rv": <revision>, "start": <key suffix>}``. The
start key is stored relative to the list prefix, as Kubernetes does, so a client cannot
craft a token that reads outside the prefix it listed: ``prefix + start`` always sorts
inside the prefix's range.
"""

from __future__ import annotations

import base64
import binascii
import json

from controlplane.storage import keys
from controlplane.storage.errors import InvalidArgument

_VERSION = 1


def encode(*, prefix: str, last_key: str, revision: int) -> str:
    """The token for the page after last_key: it starts just past last_key."""
    start = last_key[len(prefix):] + "\0"
    raw = json.dumps({"v": _VERSION, "rv": revision, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode(token: str, *, prefix: str) -> tuple[str, int]:
    """Return (start key, revision); InvalidArgument if the token is not one of ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeError) as e:
        raise InvalidArgument(f"continue token: not a valid token ({e})") from None
    if not isinstance(data, dict) or data.get("v") != _VERSION:
        raise InvalidArgument("continue token: unknown format")
    rv, start = data.get("rv"), data.get("start")
    if not isinstance(rv, int) or isinstance(rv, bool) or rv <= 0 or not isinstance(start, str):
        raise InvalidArgument("continue token: bad revision or start key")
    return prefix + start, rv


def start_of(prefix: str, *, continue_token: str | None,
             revision: int | None) -> tuple[str, int | None]:
    """Where a list page starts and at which revision (None: the current one), from the
    list call's arguments; the same checks for every Store."""
    keys.check_prefix(prefix)
    if continue_token is not None and revision is not None:
        raise InvalidArgument("list: give a continue token or a revision, not both")
    if continue_token is None:
        return prefix, revision
    return decode(continue_token, prefix=prefix)
