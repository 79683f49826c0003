"""Exact-number helpers of the calculator that hold no rule of its own: integer roots, and how a value is written
for a reader (exact digits where short, else 12 significant digits)."""

from __future__ import annotations

import math
from decimal import Decimal, Inexact, localcontext
from fractions import Fraction

Number = int | Fraction | float

SIGNIFICANT_DIGITS = 12
"""Digits shown for results that are not exact short decimals."""
MAX_PLAIN_DIGITS = 100
"""Longer integers are summarised (first and last digits, digit count) instead of written out."""


def iroot(n: int, q: int) -> int:
    """Floor of the q-th root of n >= 0, by integer Newton steps from above."""
    if n < 2:
        return n
    if q == 2:
        return math.isqrt(n)
    x = 1 << -(-n.bit_length() // q)
    while True:
        y = ((q - 1) * x + n // x ** (q - 1)) // q
        if y >= x:
            return x
        x = y


def format_number(value: Number) -> str:
    """Write a result for a reader: exact digits where short, else 12 significant digits."""
    if value == 0:
        return "0"
    if isinstance(value, int):
        digits = Decimal(value).adjusted() + 1
        if digits <= MAX_PLAIN_DIGITS:
            return str(value)
        sign, magnitude = ("-" if value < 0 else ""), abs(value)
        head, tail = magnitude // 10 ** (digits - 20), str(magnitude % 10**20).zfill(20)
        return f"about {_render(_rounded(value))} (a {digits:,}-digit integer: {sign}{head}...{tail})"
    if isinstance(value, Fraction):
        with localcontext() as ctx:
            ctx.prec = 30
            ctx.clear_flags()  # the context copies the caller's flags; only this division's count
            exact = Decimal(value.numerator) / Decimal(value.denominator)
            if not ctx.flags[Inexact]:  # a terminating decimal with at most 30 digits: show all of it
                return _render(exact.normalize())
    return _render(_rounded(value))


def _rounded(value: Number) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = SIGNIFICANT_DIGITS
        if isinstance(value, Fraction):
            return (Decimal(value.numerator) / Decimal(value.denominator)).normalize()
        return (+Decimal(value)).normalize()


def _render(d: Decimal) -> str:
    # Fixed notation only where it invents no digits: a rounded 1.12589990684e+15 must not read 1125899906840000.
    fixed = -7 < d.adjusted() and (d.as_tuple().exponent <= 0 or d.adjusted() < SIGNIFICANT_DIGITS)
    text = format(d, "f") if fixed else format(d, "e")
    return "0" if text in ("-0", "0") else text
