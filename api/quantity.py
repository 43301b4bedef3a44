"""Kubernetes' resource.Quantity: "100m", "0.5", "1Gi", "1e3" as exact numbers.

    parse("250m")            Quantity(1/4)       exact (a Fraction), never a float
    q.milli_value()          250                 cpu in millicores (rounded up)
    q.value()                1                   memory in bytes (rounded up)
    str(parse("0.5Gi"))      "512Mi"             the canonical form Kubernetes prints

Grammar (k8s.io/apimachinery/pkg/api/resource):
    <quantity> ::= <signedNumber><suffix>
    <suffix>   ::= Ki | Mi | Gi | Ti | Pi | Ei          binary SI
                 | n | u | m | "" | k | M | G | T | P | E  decimal SI
                 | e<signedNumber> | E<signedNumber>       decimal exponent

fractions is imported on the first parse(), not with this module: it imports decimal
(~3 ms and its memory), which a process that imports api but parses no quantity
(clusterctl apply of a manifest without resources, say) never needs.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fractions import Fraction

BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}  # powers of 1024
DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
           "E": 18}  # powers of 10
_DECIMAL_BY_EXP = {e: s for s, e in DECIMAL.items()}
_BINARY_BY_EXP = {e: s for s, e in BINARY.items()}

_RE = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))"
                 r"(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")


_FRACTION: type[Fraction] | None = None  # fractions.Fraction once parse() has run


def _load_fraction() -> type[Fraction]:
    global _FRACTION
    from fractions import Fraction

    _FRACTION = Fraction
    return Fraction


class QuantityError(ValueError):
    """Text that is not a quantity."""


class Quantity:
    """An exact amount with the format it was written in (binary, decimal or exponent)."""

    __slots__ = ("amount", "format")

    def __init__(self, amount: Fraction, fmt: str = "decimal") -> None:
        self.amount = amount
        self.format = fmt  # "binary" | "decimal" | "exponent"

    def value(self) -> int:
        """The amount in whole units, rounded up (bytes of memory, whole cpus)."""
        return math.ceil(self.amount)

    def milli_value(self) -> int:
        """The amount in thousandths, rounded up (millicores)."""
        return math.ceil(self.amount * 1000)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.amount == other.amount

    def __lt__(self, other: Quantity) -> bool:
        return self.amount < other.amount

    def __le__(self, other: Quantity) -> bool:
        return self.amount <= other.amount

    def __hash__(self) -> int:
        return hash(self.amount)

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"

    def __str__(self) -> str:
        return canonical(self.amount, self.format)


def parse(value: Any) -> Quantity:
    """A quantity from its text, or from a YAML number (`cpu: 1`, `cpu: 0.5`)."""
    fraction = _FRACTION or _load_fraction()
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return Quantity(fraction(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"not a quantity: {value!r}")
        return Quantity(fraction(repr(value)))
    if not isinstance(value, str):
        raise QuantityError(f"not a quantity: {value!r}")
    m = _RE.match(value.strip()) if value == value.strip() else None
    if not m:
        raise QuantityError(f"not a quantity: {value!r}")
    number, suffix = fraction(m.group(1)), m.group(2) or ""
    if suffix in BINARY:
        return Quantity(number * 1024 ** BINARY[suffix], "binary")
    if suffix in DECIMAL:
        return Quantity(number * fraction(10) ** DECIMAL[suffix], "decimal")
    exp = int(suffix[1:])
    if abs(exp) > 100:
        raise QuantityError(f"exponent out of range: {value!r}")
    return Quantity(number * fraction(10) ** exp, "exponent")


def canonical(amount: Fraction, fmt: str = "decimal") -> str:
    """Kubernetes' canonical text: the largest suffix that keeps the number whole; values
    finer than 1n are rounded up to nano units."""
    if amount == 0:
        return "0"
    sign = "-" if amount < 0 else ""
    a = abs(amount)
    if fmt == "binary" and a >= 1024 and a.denominator == 1:
        exp = 0
        n = int(a)
        while exp < 6 and n % 1024 == 0:
            n //= 1024
            exp += 1
        if exp:
            return f"{sign}{n}{_BINARY_BY_EXP[exp]}"
    nano = math.ceil(a * 10 ** 9)  # whole nano units (rounded up, as Kubernetes does)
    exp = -9
    while exp < 18 and nano % 1000 == 0:
        nano //= 1000
        exp += 3
    if fmt == "exponent":
        return f"{sign}{nano}" + (f"e{exp}" if exp else "")
    return f"{sign}{nano}{_DECIMAL_BY_EXP[exp]}"


def quantity(value: Any) -> str | None:
    """A schema check: None if VALUE is a quantity, else the problem."""
    try:
        parse(value)
    except QuantityError:
        return f"must be a quantity like 500m or 1Gi, got {value!r}"
    return None


def non_negative_quantity(value: Any) -> str | None:
    """A schema check for requests, limits, capacity: a quantity that is not negative."""
    problem = quantity(value)
    if problem is None and parse(value).amount < 0:
        return f"must be a non-negative quantity, got {value!r}"
    return problem
