"""The agent's safe calculator: exact arithmetic on a small whitelist of syntax, with hard limits.

The text is split by a hand-written tokenizer that knows only numbers, known names and a few operators,
rewritten into Python syntax (``^`` -> ``**``, ``15%`` -> ``_percent(15)``), parsed with :mod:`ast` and
walked by an evaluator that handles a handful of node types. Nothing is compiled to code or run by Python.

Exact values are ``int`` and ``Fraction``; only irrational functions (sqrt of a non-square, log, sin ...)
fall back to ``float``. Every intermediate result is size-checked, powers and factorials before they are
computed, and a wall-clock deadline is checked at every node.

Numbers may carry thousands separators where a comma cannot separate function arguments (``12,500 * 3`` is
37500; ``max(1,250)`` is still max(1, 250)): models copy numbers as the question wrote them.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
import time
from collections.abc import Callable
from fractions import Fraction
from functools import reduce
from itertools import accumulate
from typing import Annotated

from langchain_core.tools import StructuredTool, ToolException
from pydantic import Field

from lorastack.tools.exact_numbers import Number, format_number, iroot

MAX_LENGTH = 500
"""Characters in one expression."""
MAX_DEPTH = 100
"""Nesting of parentheses, and of operators in the parsed tree (a chain ``1+1+...`` nests one per ``+``)."""
MAX_NODES = 300
"""Numbers, names, operators and calls in the parsed tree."""
MAX_BITS = 14_000
"""Size of any exact intermediate (numerator and denominator each): about 4,200 decimal digits."""
MAX_EXPONENT = 4_000
"""Largest decimal exponent in a literal such as ``1e-300``."""
DEADLINE_S = 1.0
"""Wall-clock seconds one evaluation may take."""


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot evaluate; the message says what to change."""


def _sqrt(x: Number) -> Number:
    root = _exact_root(x, 2)
    return root if root is not None else math.sqrt(x)


def _cbrt(x: Number) -> Number:
    root = _exact_root(x, 3)
    return root if root is not None else math.cbrt(x)


def _ln(x: Number) -> float:
    if x <= 0:
        raise ValueError("math domain error")
    if isinstance(x, Fraction):  # math.log takes huge ints but not huge fractions
        return math.log(x.numerator) - math.log(x.denominator)
    return math.log(x)


def _log(x: Number, base: Number | None = None) -> Number:
    if base is None:
        return _ln(x)
    if base == 1:
        raise ValueError("math domain error")
    result = _ln(x) / _ln(base)
    # log(8, 2) should be 3 exactly, not 2.9999999999999996; verify with exact arithmetic.
    k = round(result)
    if not isinstance(x, float) and not isinstance(base, float) and abs(result - k) < 1e-9:
        if _times(abs(k), _log2_size(base)) <= MAX_BITS and Fraction(base) ** k == x:
            return k
    return result


def _round(x: Number, ndigits: Number = 0) -> Number:
    """Round half away from zero (2.5 -> 3), as people expect; Python's round() goes to even."""
    places = _integer(ndigits, "round's number of digits")
    if abs(places) > 100:
        raise CalculatorError("round() keeps at most 100 digits; use a number of digits between -100 and 100.")
    exact = Fraction(repr(x)) if isinstance(x, float) else Fraction(x)  # 2.675 means 2.675, not 2.67499...
    scale = Fraction(10) ** places
    rounded = math.floor(abs(exact) * scale + Fraction(1, 2)) / scale
    return -rounded if exact < 0 else rounded


def _factorial(n: Number) -> int:
    n = _integer(n, "factorial")
    if n > 2:  # n! > (n/e)**n
        _refuse_if_larger(_times(n, math.log2(n) - math.log2(math.e)), f"factorial({n})")
    return math.factorial(n)


def _comb(n: Number, k: Number) -> int:
    n, k = _integer(n, "comb"), _integer(k, "comb")
    small = min(k, n - k)
    if small > 0:  # comb(n, k) >= (n/k)**k
        _refuse_if_larger(_times(small, math.log2(n) - math.log2(small)), f"comb({n}, {k})")
    return math.comb(n, k)


def _perm(n: Number, k: Number | None = None) -> int:
    n = _integer(n, "perm")
    k = n if k is None else _integer(k, "perm")
    if 2 < k <= n:  # perm(n, k) >= (n-k+1)**k and >= k! > (k/e)**k
        low = _times(k, max(math.log2(n - k + 1), math.log2(k) - math.log2(math.e)))
        _refuse_if_larger(low, f"perm({n}, {k})")
    return math.perm(n, k)


def _times(count: int, per: float) -> float:
    """count * per for a count that may be too large to convert to float."""
    if per == 0:
        return 0.0
    return count * per if count < 2**60 else math.inf


def _whole(fn: Callable[..., int]) -> Callable[..., int]:
    """gcd or lcm of any number of whole numbers, size-checked after every step."""

    def apply(*args: Number) -> int:
        return reduce(lambda a, b: _checked(fn(a, b)), (_integer(a, fn.__name__) for a in args), fn())

    return apply


# name: (function, fewest arguments, most arguments or None for any number, domain hint)
FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None, str]] = {
    "sqrt": (_sqrt, 1, 1, "sqrt needs a number >= 0"),
    "cbrt": (_cbrt, 1, 1, ""),
    "exp": (math.exp, 1, 1, ""),
    "ln": (_ln, 1, 1, "ln needs a number > 0"),
    "log": (_log, 1, 2, "log needs a number > 0 and a base > 0 other than 1"),
    "log10": (lambda x: _log(x, 10), 1, 1, "log10 needs a number > 0"),
    "log2": (lambda x: _log(x, 2), 1, 1, "log2 needs a number > 0"),
    "sin": (math.sin, 1, 1, ""),
    "cos": (math.cos, 1, 1, ""),
    "tan": (math.tan, 1, 1, ""),
    "asin": (math.asin, 1, 1, "asin needs a number from -1 to 1"),
    "acos": (math.acos, 1, 1, "acos needs a number from -1 to 1"),
    "atan": (math.atan, 1, 1, ""),
    "atan2": (math.atan2, 2, 2, ""),
    "sinh": (math.sinh, 1, 1, ""),
    "cosh": (math.cosh, 1, 1, ""),
    "tanh": (math.tanh, 1, 1, ""),
    "degrees": (math.degrees, 1, 1, ""),
    "radians": (math.radians, 1, 1, ""),
    "floor": (math.floor, 1, 1, ""),
    "ceil": (math.ceil, 1, 1, ""),
    "round": (_round, 1, 2, ""),
    "abs": (abs, 1, 1, ""),
    "min": (lambda *args: min(args), 1, None, ""),  # min(x) of one number is x, not "x is not iterable"
    "max": (lambda *args: max(args), 1, None, ""),
    "factorial": (_factorial, 1, 1, "factorial needs a whole number >= 0"),
    "gcd": (_whole(math.gcd), 1, None, ""),
    "lcm": (_whole(math.lcm), 1, None, ""),
    "comb": (_comb, 2, 2, "comb needs whole numbers >= 0"),
    "perm": (_perm, 1, 2, "perm needs whole numbers >= 0"),
    "hypot": (math.hypot, 1, None, ""),
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
_PERCENT = "_percent"  # internal: the tokenizer writes 15% as _percent(15); users cannot type this name

HELP = (
    "Use numbers, + - * / ** (or ^) % and parentheses, the constants pi, e, tau and the functions "
    + ", ".join(FUNCTIONS)
    + "."
)

_NUMBER = re.compile(r"(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9][0-9_]*)(?:[eE][+-]?[0-9][0-9_]*)?")
_NAME = re.compile(r"[^\W\d]\w*")
_OPERATOR = re.compile(r"\*\*|//|[-+*/%^(),×÷−]")
_SPELLING = {"^": "**", "×": "*", "÷": "/", "−": "-", "π": "pi", "mod": "%"}
_CHAR_HINTS = {
    **dict.fromkeys("'\"", "text in quotes is not allowed"),
    ".": "a dot may only appear inside a number like 0.5 (write sqrt(x), not math.sqrt(x))",
    **dict.fromkeys("[]{}", "use parentheses ( ) for grouping"),
    "!": "write factorial(5), not 5!",
    **dict.fromkeys("=<>", "comparisons and assignments are not supported; send only the expression"),
}
_COMMA_HINT = "Commas only separate function arguments, as in max(1, 2), and group thousands, as in 12,500."
_GROUP = re.compile(r"[0-9]{3}(?:\.[0-9]+)?")
"""What may follow a thousands separator: three digits, then perhaps a decimal part (``12,500.75``)."""


def _comma_error(before: str, after: str, position: int) -> CalculatorError:
    """The error for a comma that separates neither arguments nor thousands, with the fix where one is clear."""
    before = before.replace(",", "")
    if before.isdigit() and after.isdigit():
        if len(after) != 3 or before.startswith("0"):  # 1,5 or 0,250: a decimal comma
            return CalculatorError(f"{_COMMA_HINT} For a decimal write {before}.{after}, not {before},{after}.")
        return CalculatorError(f"{_COMMA_HINT} For one number write {before}{after}.")
    return CalculatorError(f"{_COMMA_HINT} The comma at position {position + 1} is neither.")


def _group_thousands(tokens: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """Join numbers written with thousands separators (``12,500`` → ``12500``) where a comma cannot separate
    function arguments: outside the parentheses of a call. The digits touch each comma, the first group has 1-3
    digits and no leading zero, every later group exactly three (``1,25`` and ``0,5`` are decimal commas: refused)."""
    out: list[tuple[str, str, int]] = []
    calls: list[bool] = []  # for each open parenthesis: does it hold a function's arguments?
    i = 0
    while i < len(tokens):
        kind, tok, pos = tokens[i]
        if tok == "(":
            calls.append(bool(out) and out[-1][0] == "name" and out[-1][1].lower() in FUNCTIONS)
        elif tok == ")" and calls:
            calls.pop()
        elif tok == "," and not (calls and calls[-1]):
            after = tokens[i + 1] if i + 1 < len(tokens) else ("end", "", len(tokens))
            before = out[-1] if out else ("start", "", -1)
            if _separates_thousands(before, pos, after):
                out[-1] = ("number", before[1] + "," + after[1], before[2])
                i += 2
                continue
            if not calls:  # inside (...) the parser says what is wrong (a tuple, *unpacking)
                raise _comma_error(before[1] if before[0] == "number" else "", after[1], pos)
        out.append((kind, tok, pos))
        i += 1
    return [(kind, tok.replace(",", "") if kind == "number" else tok, pos) for kind, tok, pos in out]


def _separates_thousands(before: tuple[str, str, int], comma: int, after: tuple[str, str, int]) -> bool:
    """Does the comma at ``comma`` join the number ``before`` (perhaps joined already) and the group ``after``?"""
    kind, tok, pos = before
    groups = tok.split(",")
    return (kind == after[0] == "number" and pos + len(tok) == comma and after[2] == comma + 1
            and groups[0].isdigit() and len(groups[0]) <= 3 and not groups[0].startswith("0")
            and all(len(group) == 3 and group.isdigit() for group in groups[1:])
            and _GROUP.fullmatch(after[1]) is not None)  # fmt: skip


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """Split into (kind, text, position) with kind 'number', 'name' or 'op'; anything else is refused."""
    tokens, pos = [], 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        for kind, pattern in (("number", _NUMBER), ("name", _NAME), ("op", _OPERATOR)):
            match = pattern.match(text, pos)
            if match:
                tokens.append((kind, match.group(), pos))
                pos = match.end()
                break
        else:
            char = text[pos]
            hint = _CHAR_HINTS.get(char, "that character is not part of the calculator's language")
            raise CalculatorError(f"Unexpected character {char!r} at position {pos + 1}: {hint}. {HELP}")
    return tokens


def _to_python(text: str) -> tuple[str, list[int]]:
    """Rewrite the tokens as Python source; also return each emitted token's position in ``text``."""
    tokens = _group_thousands(_tokenize(text))
    out: list[str] = []
    where: list[int] = []
    depth, percent_end = 0, -1

    def is_operand_start(kind: str, tok: str) -> bool:
        return kind == "number" or tok == "(" or (kind == "name" and tok.lower() not in ("of", "mod"))

    for i, (kind, tok, pos) in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else ("end", "", len(text))
        if kind == "name":
            tok = _SPELLING.get(tok.lower(), tok.lower())
            if tok == "of":
                if len(out) != percent_end:
                    raise CalculatorError(f"'of' at position {pos + 1} must follow a percentage, as in 15% of 80.")
                tok = "*"
            elif tok not in FUNCTIONS and tok not in CONSTANTS and tok != "%":
                raise CalculatorError(f"Unknown name {tokens[i][1]!r} at position {pos + 1}. {HELP}")
        else:
            tok = _SPELLING.get(tok, tok)
        if out and is_operand_start(kind, tokens[i][1]):
            previous = out[-1]
            if previous[0].isdigit() or previous[0] == "." or previous == ")" or previous in CONSTANTS:
                raise CalculatorError(
                    f"Missing operator before {tokens[i][1]!r} at position {pos + 1}: write multiplication "
                    "explicitly (2*pi, not 2pi or 2 pi) and numbers without spaces or separators."
                )
        if tok == "(":
            depth += 1
            if depth > MAX_DEPTH:
                raise CalculatorError(f"Too deeply nested: more than {MAX_DEPTH} levels of parentheses.")
        elif tok == ")":
            depth -= 1
            if depth < 0:
                raise CalculatorError(f"Unmatched ')' at position {pos + 1}: remove it or add a '(' before it.")
        elif tok == "," and depth == 0:  # left by _group_thousands only where it is an error
            raise CalculatorError(_COMMA_HINT)
        elif tok == "%" and kind == "op" and not is_operand_start(following[0], following[1]):
            # A % with no operand after it is a percentage of the operand before it: wrap that operand.
            start = _operand_start(out)
            if start is None:
                raise CalculatorError(f"'%' at position {pos + 1} must follow a number, as in 15% or 17 % 5.")
            out[start:start] = [_PERCENT, "("]
            where[start:start] = [where[start]] * 2
            out.append(")")
            where.append(pos)
            percent_end = len(out)
            continue
        out.append(tok)
        where.append(pos)
    if depth > 0:
        raise CalculatorError(f"Missing ')': {depth} '(' not closed.")
    return " ".join(out), where


def _operand_start(out: list[str]) -> int | None:
    """Index where the operand ending at ``out[-1]`` starts (a number, a constant, (...) or f(...))."""
    if not out:
        return None
    j = len(out) - 1
    if out[j] != ")":
        return j if out[j][0].isdigit() or out[j][0] == "." or out[j] in CONSTANTS else None
    depth = 0
    while True:
        depth += {")": 1, "(": -1}.get(out[j], 0)
        if depth == 0:
            break
        j -= 1
    return j - 1 if j > 0 and out[j - 1].isidentifier() else j


def _parse(text: str) -> tuple[ast.Expression, str]:
    if not isinstance(text, str):
        raise CalculatorError(f"The expression must be text, got {type(text).__name__}.")
    if len(text) > MAX_LENGTH:
        raise CalculatorError(
            f"The expression is {len(text):,} characters long; the limit is {MAX_LENGTH}. "
            "Split it into smaller calculations."
        )
    if not text.strip():
        raise CalculatorError(f"The expression is empty. Send a math expression such as 2*(3+4). {HELP}")
    source, where = _to_python(text)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        # Map the column in the rewritten source back to the token the user typed.
        column, index = (exc.offset or 0) - 1, len(where)  # offset 0: Python hit the end of the input
        if column >= 0:
            ends = accumulate(len(part) + 1 for part in source.split(" "))
            index = next((i for i, end in enumerate(ends) if column < end), len(where))
        if index >= len(where):
            raise CalculatorError(f"{text!r} ends too early: a number or ')' is missing at the end.") from None
        raise CalculatorError(f"Syntax error at position {where[index] + 1} of {text!r}: {exc.msg}. {HELP}") from None
    _check_size(tree)
    return tree, source


def _check_size(tree: ast.Expression) -> None:
    stack, count = [(tree.body, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise CalculatorError(
                f"The expression is nested more than {MAX_DEPTH} levels deep. Split it into smaller calculations."
            )
        if count > MAX_NODES:
            raise CalculatorError(
                f"The expression has more than {MAX_NODES} numbers and operations. "
                "Split it into smaller calculations."
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr))


_BINARY = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b if isinstance(a, float) or isinstance(b, float) else Fraction(a) / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}
_REFUSED = {
    ast.Attribute: "attribute access (a.b)",
    ast.Subscript: "indexing (a[b])",
    ast.Lambda: "lambda",
    ast.Compare: "comparison",
    ast.BoolOp: "and/or",
    ast.JoinedStr: "an f-string",
    ast.Starred: "*unpacking",
    ast.Tuple: "a tuple",
}


class _Evaluator:
    """Walks a parsed expression; any node type not handled here is refused."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.deadline = time.monotonic() + DEADLINE_S

    def eval(self, node: ast.AST) -> Number:
        if time.monotonic() > self.deadline:
            raise CalculatorError(f"The calculation took longer than {DEADLINE_S:g} s. Simplify it or split it up.")
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            if node.id in FUNCTIONS:
                raise CalculatorError(f"{node.id} is a function: call it with parentheses, e.g. {node.id}(2).")
            raise CalculatorError(f"Unknown name {node.id!r}. {HELP}")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            value = self.eval(node.operand)
            return value if isinstance(node.op, ast.UAdd) else -value
        if isinstance(node, ast.BinOp) and (type(node.op) in _BINARY or isinstance(node.op, ast.Pow)):
            return self._binary(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Tuple):
            raise CalculatorError(_COMMA_HINT if node.elts else "Empty parentheses: put an expression inside.")
        what = _REFUSED.get(type(node), f"'{type(getattr(node, 'op', node)).__name__}'")
        raise CalculatorError(f"{what[0].upper()}{what[1:]} is not allowed. {HELP}")

    def _constant(self, node: ast.Constant) -> Number:
        value = node.value
        if isinstance(value, int) and not isinstance(value, bool):
            return _checked(value)
        if isinstance(value, float):  # re-read the literal exactly: 0.1 is 1/10, not the nearest float
            text = (ast.get_source_segment(self.source, node) or repr(value)).replace("_", "")
            exponent = text.lower().partition("e")[2]
            if exponent and abs(int(exponent)) > MAX_EXPONENT:
                raise CalculatorError(f"The number {text} is out of range: exponents up to {MAX_EXPONENT} are allowed.")
            return _checked(Fraction(text))
        kind = {str: "Text is", bytes: "Text is", complex: "Complex numbers are"}.get(type(value), f"{value!r} is")
        raise CalculatorError(f"{kind} not allowed. {HELP}")

    def _binary(self, node: ast.BinOp) -> Number:
        left, right = self.eval(node.left), self.eval(node.right)
        if isinstance(node.op, ast.Pow):
            return _checked(_power(left, right))
        if isinstance(node.op, (ast.Add, ast.Sub)) and _is_percent(node.right):
            right = left * right  # 200 + 10% is 220: a percentage of the left side, as on a calculator
        return _checked(_BINARY[type(node.op)](left, right))

    def _call(self, node: ast.Call) -> Number:
        if _is_percent(node) and len(node.args) == 1 and not node.keywords:
            return _checked(_BINARY[ast.Div](self.eval(node.args[0]), 100))
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            raise CalculatorError(f"Only these functions can be called: {', '.join(FUNCTIONS)}.")
        if node.keywords:
            raise CalculatorError(f"Keyword arguments are not supported: write {name}(x, 2), not {name}(x, n=2).")
        fn, fewest, most, domain = FUNCTIONS[name]
        args = [self.eval(arg) for arg in node.args]
        if not fewest <= len(args) <= (most if most is not None else len(args)):
            wanted = f"{fewest}" if fewest == most else f"{fewest} or more" if most is None else f"{fewest} to {most}"
            raise CalculatorError(f"{name}() takes {wanted} argument(s), got {len(args)}.")
        try:
            return _checked(fn(*args))
        except CalculatorError:
            raise
        except ValueError:
            shown = ", ".join(format_number(a) for a in args)
            raise CalculatorError(
                f"{name}({shown}) is undefined: {domain or 'the argument is outside the function domain'}."
            ) from None


def _is_percent(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == _PERCENT


def _bits(x: Number) -> int:
    x = Fraction(x)
    return max(abs(x.numerator).bit_length(), x.denominator.bit_length())


def _log2_size(x: Number) -> float:
    """log2 of the larger of numerator and denominator: x**n has about n times this many bits."""
    x = Fraction(x)
    return max(math.log2(abs(x.numerator)) if x else 0.0, math.log2(x.denominator))


def _digits_phrase(bits: float) -> str:
    return f"about {bits * math.log10(2):,.0f} digits" if bits < 1e300 else "astronomically many digits"


def _refuse_if_larger(bits: float, what: str) -> None:
    if bits > MAX_BITS:
        raise CalculatorError(
            f"{what} is too large: it would have {_digits_phrase(bits)} and the limit is "
            f"{_digits_phrase(MAX_BITS)[6:]}. Work with logarithms instead (log10 gives the number of digits)."
        )


def _checked(x: object) -> Number:
    """Normalise a result (whole fractions become int) and refuse it if it is too large or not real."""
    if isinstance(x, Fraction) and x.denominator == 1:
        x = x.numerator
    if isinstance(x, (int, Fraction)) and not isinstance(x, bool):
        _refuse_if_larger(_bits(x), "The result")
        return x
    if isinstance(x, float):
        if math.isnan(x):
            raise CalculatorError("The result is not a number (for example inf - inf). Check the expression.")
        if math.isinf(x):
            raise CalculatorError("The result is too large for floating point (over about 1.8e308).")
        return x
    if isinstance(x, complex):
        raise CalculatorError("The result is not a real number; complex numbers are not supported.")
    raise CalculatorError(f"Unexpected result of type {type(x).__name__}. {HELP}")


def _integer(x: Number, what: str) -> int:
    if isinstance(x, int):
        return x
    if isinstance(x, float) and x.is_integer():
        return int(x)
    raise CalculatorError(f"{what} needs whole numbers, got {format_number(x)}.")


def _exact_root(x: Number, q: int) -> Number | None:
    """The exact real q-th root of an exact number, or None (floats, non-perfect powers, even roots of x < 0)."""
    if isinstance(x, float) or q > 64 or (x < 0 and q % 2 == 0):
        return None
    x = Fraction(x)
    num, den = iroot(abs(x.numerator), q), iroot(x.denominator, q)
    if num**q != abs(x.numerator) or den**q != x.denominator:
        return None
    return _checked(Fraction(num if x >= 0 else -num, den))


def _power(base: Number, exponent: Number) -> Number:
    if isinstance(exponent, int):
        if isinstance(base, float):
            return base**exponent
        # Refuse on the result's size, estimated before computing it: 9**9**9 must never start.
        _refuse_if_larger(_times(abs(exponent), _log2_size(base)), "The power")
        return Fraction(base) ** exponent
    if isinstance(exponent, Fraction):
        root = _exact_root(base, exponent.denominator)
        if root is not None:
            return _power(root, exponent.numerator)
    if base < 0 and not (isinstance(exponent, float) and exponent.is_integer()):
        raise CalculatorError(
            "A negative number to a fractional power is not a real number (odd roots like (-8)**(1/3) work)."
        )
    return float(base) ** float(exponent)


def evaluate(expression: str) -> Number:
    """The exact value of ``expression`` (int, Fraction, or float where irrational); raises CalculatorError."""
    tree, source = _parse(expression)
    try:
        return _Evaluator(source).eval(tree)
    except ZeroDivisionError:
        raise CalculatorError(f"Division by zero in {expression!r}.") from None
    except OverflowError:
        raise CalculatorError(
            "A number got too large for floating point (over about 1.8e308). Use smaller numbers or logarithms."
        ) from None


def calculate(expression: str) -> str:
    """Evaluate ``expression`` and return the result as text; raises CalculatorError with a usable message."""
    return format_number(evaluate(expression))


def _calculator(expression: Annotated[str, Field(description="One math expression, e.g. 2*(3+4)")]) -> str:
    """Evaluate one math expression exactly and return the number.

    Accepts numbers, + - * / ** (or ^), //, parentheses, constants pi e tau, and functions sqrt cbrt exp
    ln log(x) log(x, base) log10 log2, sin cos tan asin acos atan atan2 sinh cosh tanh (radians), degrees
    radians, floor ceil round(x, digits) abs min max, factorial gcd lcm comb perm hypot.
    Percent: 15% of 80 = 12, 80 * 15% = 12, 200 + 10% = 220. A % with a number after it is the remainder:
    17 % 5 = 2 (or 17 mod 5). No variables, units or text; no thousands separators (write 1234567).
    Examples: "(3 + 4) * 2^10", "sqrt(2) / 2", "15% of 80".
    """
    try:
        return calculate(expression)
    except CalculatorError as exc:
        raise ToolException(str(exc)) from exc


calculator_tool = StructuredTool.from_function(
    _calculator,
    name="calculator",
    description=inspect.cleandoc(_calculator.__doc__ or ""),  # no indentation in the model's prompt
    handle_tool_error=True,  # a ToolException's message becomes the observation instead of ending the run
)
