"""JSON for the container start path, without `import json`.

The stdlib `json` package imports `re` (and through it `enum` and `functools`): about
10 ms of a ~25 ms `corral-runc run`. Its C accelerator `_json` needs none of that, so the
runtime parses and writes its files with it directly. Same grammar, same output as
`json.loads` / `json.dumps(obj, separators=(",", ":"))`.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class JSONError(ValueError):
    pass


class _Context:
    # The attributes c_make_scanner reads from json.JSONDecoder.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> float:
        # NaN / Infinity are not JSON; reject them as strict parsers do.
        raise JSONError(f"invalid JSON constant {name}")


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # duck-typed decoder
_WS = " \t\n\r"


def _skip(s: str, i: int) -> int:
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    return i


def loads(s: str | bytes) -> Any:
    if isinstance(s, bytes):
        try:
            s = s.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JSONError(f"not UTF-8: {e}") from None
    i = _skip(s, 0)
    try:
        value, end = _scan(s, i)
    except StopIteration as e:
        raise JSONError(f"invalid JSON at offset {e.value}") from None
    except ValueError as e:  # raised by scanstring for bad escapes / control characters
        raise JSONError(str(e)) from None
    finally:
        _Context.memo.clear()
    end = _skip(s, end)
    if end != len(s):
        raise JSONError(f"invalid JSON: extra data at offset {end}")
    return value


def _default(o: object) -> object:
    raise TypeError(f"{type(o).__name__} is not JSON serializable")


def dumps(obj: Any) -> str:
    # c_make_encoder keeps a markers dict for cycle detection; give it a fresh one each call.
    enc = _json.make_encoder(
        {}, _default, _json.encode_basestring_ascii, None, ":", ",", False, False, False
    )
    return "".join(enc(obj, 0))


def load_file(path: str) -> Any:
    with open(path, "rb") as f:
        return loads(f.read())
