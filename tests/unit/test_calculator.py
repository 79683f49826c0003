"""The agent's safe calculator: exact results, refused hostile input, enforced limits, the LangChain tool."""

from __future__ import annotations

import ast
import builtins
import itertools
import operator
import time
from fractions import Fraction
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lorastack.tools import calculator
from lorastack.tools.calculator import CalculatorError, calculate, calculator_tool, evaluate

# Everything refused must be refused quickly; the evaluator's own deadline is the upper bound.
FAST_S = calculator.DEADLINE_S


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0.1 + 0.2", "0.3"),
        ("1/3*3", "1"),
        ("2**100", "1267650600228229401496703205376"),
        ("123456789 * 987654321", "121932631112635269"),
        ("7/2", "3.5"),
        ("1/3", "0.333333333333"),
        ("2/3", "0.666666666667"),
        ("1/7", "0.142857142857"),
        ("1/1024", "0.0009765625"),
        ("2**-100", "7.88860905221e-31"),
        ("1e20", "100000000000000000000"),
        ("1.5e-7", "1.5e-7"),
        ("0.000001", "0.000001"),
        ("2.0**50", "1125899906842624"),
        ("exp(35)", "1.58601345231e+15"),
        ("2/3 * 10**13", "6.66666666667e+12"),
        ("1/3 * 10**10", "3333333333.33"),
        ("12345678901234.5", "12345678901234.5"),
        ("1500.0", "1500"),
        ("exp(100)", "2.68811714182e+43"),
        ("1_000_000 / 8", "125000"),
        ("2 + 3 * 4", "14"),
        ("(2 + 3) * 4", "20"),
        ("2**3**2", "512"),
        ("-2**2", "-4"),
        ("2^10", "1024"),
        ("3 × 4 ÷ 8", "1.5"),
        ("−5 + 2", "-3"),
        ("10 // 3", "3"),
        ("-7 // 2", "-4"),
        ("7.5 % 2", "1.5"),
        ("17 % 5", "2"),
        ("17 mod 5", "2"),
        ("17 % (5)", "2"),
        ("15% of 80", "12"),
        ("80 * 15%", "12"),
        ("15%", "0.15"),
        ("200 + 10%", "220"),
        ("200 - 10%", "180"),
        ("200 + 10% of 50", "205"),
        ("10%*5", "0.5"),
        ("sqrt(16)", "4"),
        ("sqrt(9/4)", "1.5"),
        ("sqrt(2)", "1.41421356237"),
        ("sqrt(2)**2", "2"),
        ("cbrt(27)", "3"),
        ("cbrt(-27)", "-3"),
        ("8**(2/3)", "4"),
        ("(-8)**(1/3)", "-2"),
        ("2**0.5", "1.41421356237"),
        ("4.0", "4"),
        ("log(8, 2)", "3"),
        ("log10(1000)", "3"),
        ("log(0.001, 10)", "-3"),
        ("log2(1/8)", "-3"),
        ("ln(e)", "1"),
        ("log(e**2)", "2"),
        ("exp(1)", "2.71828182846"),
        ("pi", "3.14159265359"),
        ("π", "3.14159265359"),
        ("tau / 2", "3.14159265359"),
        ("PI", "3.14159265359"),
        ("cos(0)", "1"),
        ("degrees(pi)", "180"),
        ("radians(180)", "3.14159265359"),
        ("atan2(1, 1) * 4", "3.14159265359"),
        ("tanh(0)", "0"),
        ("hypot(3, 4)", "5"),
        ("floor(7/2)", "3"),
        ("ceil(7/2)", "4"),
        ("floor(-0.5)", "-1"),
        ("round(2.5)", "3"),
        ("round(-2.5)", "-3"),
        ("round(3.14159, 2)", "3.14"),
        ("round(2.675, 2)", "2.68"),
        ("round(1234, -2)", "1200"),
        ("abs(-3/4)", "0.75"),
        ("min(3, 1/2, 2)", "0.5"),
        ("max(2, 0.5)", "2"),
        ("max(2)", "2"),
        ("min(1/4)", "0.25"),
        ("factorial(20)", "2432902008176640000"),
        ("gcd(12, 18, -24)", "6"),
        ("lcm(4, 6)", "12"),
        ("comb(52, 5)", "2598960"),
        ("perm(5, 2)", "20"),
        ("perm(5)", "120"),
        ("comb(10**20, 2)", "4999999999999999999950000000000000000000"),
        ("0 * -1", "0"),
        ("  1 +\n 2  ", "3"),
        # Thousands separators where a comma cannot separate arguments (as models write numbers they read).
        ("1,250 * 2.5 * 60", "187500"),
        ("1,234,567.5 + 1", "1234568.5"),
        ("-12,500 * (100 - 10) / 100", "-11250"),
        ("(48,000 + 1) / 1", "48001"),
        ("max((1,000), 2)", "1000"),
        ("max(1,250)", "250"),  # inside a call the comma separates arguments
        ("15% of (2,000)", "300"),  # 'of' is not a call
    ],
)
def test_results(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


def test_long_integers_are_summarised_with_their_digit_count() -> None:
    assert calculate("10**99") == "1" + "0" * 99
    assert calculate("factorial(100)") == (
        "about 9.33262154439e+157 (a 158-digit integer: 93326215443944152681...00000000000000000000)"
    )
    assert calculate("-(2**1000)").startswith("about -1.07150860719e+301 (a 302-digit integer: -10715086071862")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1/0", "Division by zero"),
        ("5 % 0", "Division by zero"),
        ("0**-1", "Division by zero"),
        ("sqrt(-1)", "sqrt(-1) is undefined: sqrt needs a number >= 0"),
        ("log(0)", "log(0) is undefined"),
        ("log(5, 1)", "base > 0 other than 1"),
        ("asin(2)", "asin needs a number from -1 to 1"),
        ("factorial(-1)", "factorial needs a whole number >= 0"),
        ("factorial(2.5)", "needs whole numbers, got 2.5"),
        ("(-4)**0.5", "not a real number"),
        ("exp(1000)", "too large for floating point"),
        ("2 +", "missing at the end"),
        ("2 + * 3", "Syntax error at position 5"),
        ("(1 + 2", "Missing ')'"),
        ("1 + 2)", "Unmatched ')' at position 6"),
        ("1,2", "For a decimal write 1.2, not 1,2"),
        ("1,25 + 1", "For a decimal write 1.25, not 1,25"),
        ("0,500", "For a decimal write 0.500"),
        ("1, 250", "For one number write 1250"),
        ("1234,567", "For one number write 1234567"),
        ("1,234,56", "For a decimal write 1234.56"),
        ("1,000e3", "The comma at position 2 is neither"),
        ("5,", "The comma at position 2 is neither"),
        ("round(1,250, 2)", "round() takes 1 to 2 argument(s), got 3"),
        ("()", "Empty parentheses"),
        ("2pi", "Missing operator before 'pi' at position 2"),
        ("2 (3 + 4)", "Missing operator before '('"),
        ("1 000", "Missing operator"),
        ("x + 1", "Unknown name 'x' at position 1. Use numbers"),
        ("sqrt", "sqrt is a function"),
        ("sqrt(1, 2)", "sqrt() takes 1 argument(s), got 2"),
        ("min()", "min() takes 1 or more argument(s), got 0"),
        ("15 of 80", "'of' at position 4 must follow a percentage"),
        ("% 5", "Syntax error at position 1"),
        ("5!", "write factorial(5)"),
        ("2 < 3", "comparisons"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_errors_say_what_went_wrong(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError, match=None) as caught:
        calculate(expression)
    assert message in str(caught.value)


def test_unknown_name_lists_what_is_available() -> None:
    with pytest.raises(CalculatorError) as caught:
        calculate("foo(2)")
    for name in ("sqrt", "log", "factorial", "pi", "tau", "+ - * /"):
        assert name in str(caught.value)


HOSTILE = [
    ("__import__('os').system('echo hi')", "text in quotes"),
    ("__import__", "Unknown name '__import__'"),
    ("().__class__.__bases__[0].__subclasses__()", "a dot may only appear inside a number"),
    ("math.sqrt(4)", "a dot may only appear inside a number"),
    ("(1).real", "a dot may only appear inside a number"),
    ("[1, 2][0]", "use parentheses"),
    ("{1: 2}", "use parentheses"),
    ("lambda: 1", "Unexpected character ':' at position 7"),
    ("(lambda x: x)(1)", "Unexpected character ':'"),
    ("[x for x in (1, 2)]", "use parentheses"),
    ("sum(x for x in (1, 2))", "Unknown name 'sum'"),
    ("f'{1+1}'", "text in quotes"),
    ('"a" * 10', "text in quotes"),
    ("1 if 1 else 2", "Unknown name 'if'"),
    ("x := 1", "Unexpected character ':'"),
    ("round(2.5, ndigits=1)", "comparisons and assignments are not supported"),
    ("max(*(1, 2))", "*unpacking is not allowed"),
    ("1 @ 2", "'@'"),
    ("~1", "'~'"),
    ("1 << 10000", "'<'"),
    ("1; 2", "';'"),
    ("_percent(5)", "Unknown name '_percent'"),
    ("1j", "Unknown name 'j'"),
    ("9**9**9", "too large"),
    ("10**10**10", "too large"),
    ("10**100000", "about 100,000 digits and the limit is 4,214 digits"),
    ("2**(10**400)", "astronomically many digits"),
    ("(1/3)**100000", "too large"),
    ("factorial(100000)", "factorial(100000) is too large"),
    ("factorial(10**6)", "too large"),
    ("factorial(10**400)", "too large"),
    ("comb(10**6, 5*10**5)", "too large"),
    ("comb(10**400, 10**200)", "too large"),
    ("perm(10**100, 10**50)", "too large"),
    ("lcm(10**4000, 10**4000 + 1)", "too large"),
    ("*".join(["(10**1000)"] * 20), "The result is too large"),
    ("*".join(["(10**100)"] * 45), "The result is too large"),
    ("(10**4000)*(10**4000)", "The result is too large"),
    ("1e5000", "exponents up to 4000"),
    ("1e-99999999", "exponents up to 4000"),
    ("(" * 200 + "1" + ")" * 200, "more than 100 levels of parentheses"),
    ("(" * 500 + "1" + ")" * 500, "limit is 500"),
    ("-" * 400 + "1", "nested more than 100 levels"),
    ("1+" * 150 + "1", "nested more than 100 levels"),
    ("max(" + "-1," * 160 + "-1)", "more than 300 numbers and operations"),
    ("1" * 100_000, "100,000 characters long; the limit is 500"),
    ("9" * 500, None),  # a 500-digit literal is accepted and summarised
]


@pytest.mark.parametrize(("expression", "message"), HOSTILE, ids=[e[:40] for e, _ in HOSTILE])
def test_hostile_input_is_refused_quickly(expression: str, message: str | None) -> None:
    start = time.perf_counter()
    if message is None:
        assert calculate(expression).startswith("about 1e+500 (a 500-digit integer")
    else:
        with pytest.raises(CalculatorError) as caught:
            calculate(expression)
        assert message in str(caught.value)
    assert time.perf_counter() - start < FAST_S


def test_nothing_is_executed_or_compiled(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Payloads that would write a file must not, and no code object is ever built (only ASTs)."""
    target = tmp_path / "pwned"
    calls = []
    real_compile = builtins.compile

    def watching_compile(source, filename, mode, flags=0, *args, **kwargs):
        if not flags & ast.PyCF_ONLY_AST:
            calls.append(("compile", source))
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "compile", watching_compile)
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: calls.append(("eval", a)))
    monkeypatch.setattr(builtins, "exec", lambda *a, **k: calls.append(("exec", a)))
    payloads = [
        f"__import__('builtins').open('{target}', 'w')",
        f"open('{target}', 'w')",
        f"exec(\"open('{target}', 'w')\")",
        f"eval(\"open('{target}', 'w')\")",
        f"().__class__.__base__.__subclasses__()[0]('{target}')",
    ]
    for payload in payloads:
        with pytest.raises(CalculatorError):
            calculate(payload)
    assert calculate("sqrt(16) + 15% of 80 + 2**0.5 * log(8, 2)") == "20.2426406871"
    assert not target.exists()
    assert calls == []


@pytest.mark.parametrize(
    ("python", "message"),
    [
        ("__import__('os')", "Only these functions can be called"),
        ("(1).real", "Attribute access (a.b) is not allowed"),
        ("(1, 2)[0]", "Indexing (a[b]) is not allowed"),
        ("(lambda: 1)()", "Only these functions can be called"),
        ("lambda: 1", "Lambda is not allowed"),
        ("[x for x in ()]", "'ListComp' is not allowed"),
        ("f'{1}'", "An f-string is not allowed"),
        ("'abc'", "Text is not allowed"),
        ("1j", "Complex numbers are not allowed"),
        ("1 < 2", "Comparison is not allowed"),
        ("1 << 2", "'LShift' is not allowed"),
        ("sqrt(*(4,))", "*unpacking is not allowed"),
        ("round(2.5, ndigits=1)", "Keyword arguments are not supported"),
        ("x", "Unknown name 'x'"),
        ("True", "True is not allowed"),
    ],
)
def test_evaluator_refuses_unknown_nodes_on_its_own(python: str, message: str) -> None:
    """Second line of defence: even Python syntax the tokenizer would never let through is refused."""
    with pytest.raises(CalculatorError) as caught:
        calculator._Evaluator(python).eval(ast.parse(python, mode="eval"))
    assert message in str(caught.value)


def test_deadline_is_checked_during_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that jumps 0.3 s per reading: the evaluator must stop part-way, not only at the start."""
    readings = itertools.count()
    clock = SimpleNamespace(monotonic=lambda: 0.3 * next(readings))
    monkeypatch.setattr(calculator, "time", clock)
    with pytest.raises(CalculatorError, match="took longer than 1 s"):
        calculate("1 + 2 + 3 + 4 + 5 + 6")
    assert 4 <= next(readings) <= 6  # it read the clock for a few nodes, then gave up


# Property tests: small integer and fraction expressions agree with Python's own exact arithmetic.

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


def _leaf(value: int | Fraction) -> tuple[str, int | Fraction]:
    if isinstance(value, Fraction):
        return f"({value.numerator}/{value.denominator})", value
    return (str(value) if value >= 0 else f"({value})"), value


def _expressions(leaves: st.SearchStrategy, ops: str) -> st.SearchStrategy:
    def combine(children: st.SearchStrategy) -> st.SearchStrategy:
        return st.tuples(children, st.sampled_from(ops), children).map(
            lambda t: (f"({t[0][0]} {t[1]} {t[2][0]})", (t[0][1], t[1], t[2][1]))
        )

    return st.recursive(leaves.map(_leaf), combine, max_leaves=12)


def _reference(tree):
    if not isinstance(tree, tuple):
        return tree
    left, op, right = tree
    left, right = _reference(left), _reference(right)
    return Fraction(left) / right if op == "/" else _OPS[op](left, right)


@settings(max_examples=200, deadline=None)
@given(_expressions(st.integers(-1000, 1000), "+-*"))
def test_integer_arithmetic_matches_python(case) -> None:
    text, tree = case
    expected = _reference(tree)
    assert calculate(text) == str(expected)


@settings(max_examples=200, deadline=None)
@given(_expressions(st.fractions(max_denominator=50).filter(lambda f: abs(f) < 1000), "+-*/"))
def test_fraction_arithmetic_is_exact(case) -> None:
    text, tree = case
    try:
        expected = _reference(tree)
    except ZeroDivisionError:
        with pytest.raises(CalculatorError, match="Division by zero"):
            evaluate(text)
        return
    assert evaluate(text) == expected
    shown = Fraction(calculate(text))
    assert abs(shown - expected) <= abs(expected) * Fraction(1, 10**11)


@settings(max_examples=200, deadline=None)
@given(st.integers(-(10**15), 10**15), st.integers(0, 99), st.integers(1, 10**6))
def test_numbers_with_thousands_separators_read_as_written(n: int, cents: int, m: int) -> None:
    """Grouped as people write them, alone, with decimals, in sums, in grouping parentheses; inside a call a comma
    still separates arguments."""
    assert calculate(f"{n:,}") == str(n)
    assert evaluate(f"{abs(n):,}.{cents:02d} + 0") == abs(n) + Fraction(cents, 100)
    assert calculate(f"({m:,} + {n:,}) * 2") == str((m + n) * 2)
    assert calculate(f"max({m},{n % 900 + 100})") == str(max(m, n % 900 + 100))  # max(1,250): two arguments


_CALCULATOR_ALPHABET = "0123456789.+-*/%^(), eEpisqrtlogfacmnxd_!'[]"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=80), st.text(_CALCULATOR_ALPHABET, max_size=80)))
def test_any_text_gives_a_result_or_a_calculator_error_in_time(text: str) -> None:
    start = time.perf_counter()
    try:
        assert isinstance(calculate(text), str)
    except CalculatorError as exc:
        assert str(exc)
    assert time.perf_counter() - start < FAST_S


# The LangChain tool the agent uses.


def test_tool_is_named_calculator_with_one_text_argument() -> None:
    assert calculator_tool.name == "calculator"
    assert list(calculator_tool.args) == ["expression"]
    assert calculator_tool.args["expression"]["type"] == "string"
    assert "15% of 80" in calculator_tool.description and "17 % 5" in calculator_tool.description


def test_tool_returns_the_result() -> None:
    assert calculator_tool.invoke({"expression": "15% of 80"}) == "12"


def test_tool_returns_errors_as_text_for_the_agent() -> None:
    assert calculator_tool.invoke({"expression": "1/0"}) == "Division by zero in '1/0'."
    observation = calculator_tool.invoke({"expression": "x + 1"})
    assert observation.startswith("Unknown name 'x'") and "sqrt" in observation
