"""resource.Quantity: exact parsing, milli/whole values, the canonical form, the check."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction

import pytest

from api import quantity as q

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


@pytest.mark.parametrize("text,amount,milli,value,canonical", [
    pytest.param("100m", Fraction(1, 10), 100, 1, "100m", id="millicores"),
    pytest.param("0.5", Fraction(1, 2), 500, 1, "500m", id="fraction-of-a-cpu"),
    pytest.param("1", Fraction(1), 1000, 1, "1", id="one"),
    pytest.param(2, Fraction(2), 2000, 2, "2", id="yaml-int"),
    pytest.param(0.25, Fraction(1, 4), 250, 1, "250m", id="yaml-float"),
    pytest.param("1Gi", Fraction(2 ** 30), 2 ** 30 * 1000, 2 ** 30, "1Gi", id="gibi"),
    pytest.param("512Mi", Fraction(512 * 2 ** 20), 512 * 2 ** 20 * 1000, 512 * 2 ** 20,
                 "512Mi", id="mebi"),
    pytest.param("0.5Gi", Fraction(2 ** 29), 2 ** 29 * 1000, 2 ** 29, "512Mi",
                 id="binary-fraction"),
    pytest.param("1536Mi", Fraction(1536 * 2 ** 20), 1536 * 2 ** 20 * 1000,
                 1536 * 2 ** 20, "1536Mi", id="binary-not-a-whole-gi"),
    pytest.param("1e3", Fraction(1000), 10 ** 6, 1000, "1e3", id="exponent"),
    pytest.param("2k", Fraction(2000), 2 * 10 ** 6, 2000, "2k", id="kilo"),
    pytest.param("1M", Fraction(10 ** 6), 10 ** 9, 10 ** 6, "1M", id="mega"),
    pytest.param("1500", Fraction(1500), 1500 * 1000, 1500, "1500", id="plain"),
    pytest.param("1000", Fraction(1000), 10 ** 6, 1000, "1k", id="canonical-kilo"),
    pytest.param("1.5", Fraction(3, 2), 1500, 2, "1500m", id="value-rounds-up"),
    pytest.param("0.1m", Fraction(1, 10000), 1, 1, "100u", id="milli-rounds-up"),
    pytest.param("0", Fraction(0), 0, 0, "0", id="zero"),
    pytest.param("+1", Fraction(1), 1000, 1, "1", id="signed"),
    pytest.param(".5", Fraction(1, 2), 500, 1, "500m", id="leading-dot"),
])
def test_parse(text: object, amount: Fraction, milli: int, value: int,
               canonical: str) -> None:
    got = q.parse(text)
    assert got.amount == amount
    assert got.milli_value() == milli
    assert got.value() == value
    assert str(got) == canonical


@pytest.mark.parametrize("text", [
    pytest.param("1Gb", id="wrong-suffix"),
    pytest.param("abc", id="letters"),
    pytest.param("", id="empty"),
    pytest.param(" 1", id="space"),
    pytest.param("1.2.3", id="two-dots"),
    pytest.param("1ki", id="lowercase-ki"),
    pytest.param(True, id="boolean"),
    pytest.param(None, id="null"),
    pytest.param(float("inf"), id="infinity"),
])
def test_not_a_quantity(text: object) -> None:
    with pytest.raises(q.QuantityError):
        q.parse(text)
    assert q.quantity(text) == f"must be a quantity like 500m or 1Gi, got {text!r}"


def test_check_accepts_quantities_and_compares_exactly() -> None:
    assert q.quantity("1Gi") is None and q.quantity(3) is None
    assert q.non_negative_quantity("-1") == "must be a non-negative quantity, got '-1'"
    assert q.parse("1024Mi") == q.parse("1Gi")
    assert q.parse("999m") < q.parse("1")
    assert q.parse("0.1") == q.parse("100m")


def test_fractions_is_imported_on_the_first_parse_not_with_the_module() -> None:
    probe = ("import sys; from api import quantity as q; "
             "before = 'fractions' in sys.modules or 'decimal' in sys.modules; "
             "v = q.parse('250m').milli_value(); "
             "print(before, 'fractions' in sys.modules, v)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    assert out == ["False", "True", "250"]
