"""The C types and libc calls linux.py needs, built on `_ctypes` directly.

The `ctypes` package is a Python layer over the `_ctypes` extension; importing it costs
~3.5 ms, a tenth of a whole container start, for conveniences this runtime does not use.
These few lines give the same calls: libc functions looked up in the running program
(libc is already loaded), errno saved after each call, C ints, longs and structures.
(seccomp.py and cgroups/bpf.py, off the common start path, use `ctypes` itself; a
container start asks libseccomp only its version, through Library here.)
"""

from __future__ import annotations

import _ctypes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class c_int(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "i"


class c_long(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "l"


class c_ulong(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "L"


class c_ushort(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "H"


class c_void_p(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "P"


class c_uint32(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "I"


class c_uint64(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "Q"


class c_char(_ctypes._SimpleCData):  # type: ignore[type-arg]
    _type_ = "c"


Structure = _ctypes.Structure
byref = _ctypes.byref
addressof = _ctypes.addressof
sizeof = _ctypes.sizeof
get_errno = _ctypes.get_errno

_FLAGS = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO


class _IntFunction(_ctypes.CFuncPtr):
    _flags_ = _FLAGS
    _restype_ = c_int


class _LongFunction(_ctypes.CFuncPtr):
    _flags_ = _FLAGS
    _restype_ = c_long


class _Program:
    """dlopen(NULL): the running program, through which libc's symbols resolve."""

    _handle = _ctypes.dlopen(None, 0)  # type: ignore[arg-type]  # NULL: this program


_PROGRAM = _Program()


def function(name: str, *, returns_long: bool = False) -> Callable[..., int]:
    """The libc function NAME; arguments go as C ints, char pointers (bytes, None) or
    what byref() and the c_* types give. It returns a C int (a long with RETURNS_LONG)."""
    cls = _LongFunction if returns_long else _IntFunction
    fn: Callable[..., int] = cls((name, _PROGRAM))  # type: ignore[arg-type]  # duck-typed
    return fn


class _PointerFunction(_ctypes.CFuncPtr):
    _flags_ = _FLAGS
    _restype_ = c_void_p


class Library:
    """A shared library, dlopen()ed by name (OSError if the loader cannot find it)."""

    def __init__(self, name: str) -> None:
        self._handle = _ctypes.dlopen(name, 2)  # RTLD_NOW

    def pointer_function(self, name: str) -> Callable[..., int | None]:
        """NAME in this library, as a function returning a pointer (an int, None for NULL)."""
        fn: Callable[..., int | None] = _PointerFunction((name, self))  # type: ignore[arg-type]
        return fn


def array(ctype: Any, length: int) -> Any:
    """An array type of LENGTH elements of CTYPE (instantiate it for the buffer)."""
    return type(f"{ctype.__name__}_Array_{length}", (_ctypes.Array,),
                {"_type_": ctype, "_length_": length})
