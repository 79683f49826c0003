"""Arithmetic word problems for the calculator tool, as (question, expression, exact value).

Each template samples its numbers, writes the question, the one calculator expression that solves it (using
the numbers as the question writes them) and the value computed here with :class:`~fractions.Fraction`, so
the ground truth never depends on the calculator being right. Expressions use only numbers, ``+ - * /``,
parentheses and ``round(x, 2)``. Train and eval templates are separate lists with different wording.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Problem:
    question: str
    expression: str
    value: Fraction
    answer: str
    """The final reply, with ``{result}`` where the calculator's output goes."""
    rounded: bool = False
    """The question asks for a result rounded to the cent (the eval tolerance is then 0.01)."""
    plan: str = ""
    """A short plan the assistant writes before its tool call (empty: none)."""


Template = Callable[[random.Random], Problem]

PEOPLE = ["Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Kemi", "Liam",
          "Maya", "Noah", "Olga", "Pablo", "Rosa", "Sami", "Tara", "Yusuf"]  # fmt: skip
ITEMS = ["notebook", "pencil", "apple", "mug", "candle", "ticket", "sandwich", "scarf", "plant", "battery"]
PLACES = ["the north shop", "the harbour office", "the school library", "the city museum", "the farm stand"]


def _money(rng: random.Random, low: int, high: int) -> tuple[Fraction, str]:
    """A price between low and high dollars, in whole cents: (value, text with two decimals)."""
    cents = rng.randint(low * 100, high * 100)
    return Fraction(cents, 100), f"{cents // 100}.{cents % 100:02d}"


def round_half_up(x: Fraction, places: int = 2) -> Fraction:
    """round(x, places) as the calculator does it: halves away from zero."""
    scale = Fraction(10) ** places
    magnitude = (abs(x) * scale + Fraction(1, 2)).__floor__() / scale
    return magnitude if x >= 0 else -magnitude


# --- train templates ------------------------------------------------------------------------------------------


def shopping_total(rng: random.Random) -> Problem:
    who, (a, b) = rng.choice(PEOPLE), rng.sample(ITEMS, 2)
    qa, qb = rng.randint(2, 9), rng.randint(2, 9)
    (pa, ta), (pb, tb) = _money(rng, 1, 20), _money(rng, 1, 20)
    return Problem(
        f"{who} buys {qa} {a}s at ${ta} each and {qb} {b}s at ${tb} each. How much does {who} spend in total?",
        f"{qa} * {ta} + {qb} * {tb}", qa * pa + qb * pb, f"{who} spends ${{result}} in total.",
    )  # fmt: skip


def percent_of(rng: random.Random) -> Problem:
    pct, n = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 45, 60, 75]), rng.randint(20, 4000)
    phrasing = rng.choice(["What is {p}% of {n}?", "Calculate {p} percent of {n}.", "How much is {p}% of {n}?"])
    return Problem(phrasing.format(p=pct, n=n), f"{pct} / 100 * {n}", Fraction(pct, 100) * n,
                   f"{pct}% of {n} is {{result}}.")  # fmt: skip


def discount(rng: random.Random) -> Problem:
    item, pct = rng.choice(ITEMS), rng.choice([10, 15, 20, 25, 30, 35, 40, 50])
    price, text = _money(rng, 10, 300)
    return Problem(
        f"A {item} costs ${text}. It is on sale for {pct}% off. What is the sale price?",
        f"{text} * (100 - {pct}) / 100", price * (100 - pct) / 100, "The sale price is ${result}.",
    )


def unit_price(rng: random.Random) -> Problem:
    item, n = rng.choice(ITEMS), rng.randint(3, 24)
    price, text = _money(rng, 2, 60)
    return Problem(
        f"A pack of {n} {item}s costs ${text}. What is the price of one {item}, rounded to the cent?",
        f"round({text} / {n}, 2)", round_half_up(price / n), f"One {item} costs ${{result}}.", rounded=True,
    )


def difference(rng: random.Random) -> Problem:
    first, second = rng.sample(PLACES, 2)
    a, b = rng.randint(500, 9000), rng.randint(100, 499)
    unit = rng.choice(["visitors", "books", "orders", "letters"])
    return Problem(
        f"Last year {first} had {a} {unit} and {second} had {b}. How many more {unit} did {first} have?",
        f"{a} - {b}", Fraction(a - b), f"{first[0].upper()}{first[1:]} had {{result}} more {unit}.",
    )


def product(rng: random.Random) -> Problem:
    a, b = rng.randint(12, 999), rng.randint(12, 999)
    phrasing = rng.choice(["What is {a} times {b}?", "Multiply {a} by {b}.", "What is {a} * {b}?"])
    return Problem(phrasing.format(a=a, b=b), f"{a} * {b}", Fraction(a * b), f"{a} times {b} is {{result}}.")


def split_bill(rng: random.Random) -> Problem:
    n = rng.randint(2, 8)
    share, _ = _money(rng, 5, 80)
    total = share * n  # an exact number of cents each
    text = f"{int(total)}.{int(total * 100) % 100:02d}"
    return Problem(
        f"{n} friends split a bill of ${text} equally. How much does each of them pay?",
        f"{text} / {n}", total / n, "Each of them pays ${result}.",
    )


def travel(rng: random.Random) -> Problem:
    s1, h1, s2, h2 = rng.randint(40, 120), rng.randint(2, 5), rng.randint(30, 110), rng.randint(2, 4)
    return Problem(
        f"A bus drives at {s1} km/h for {h1} hours, then at {s2} km/h for {h2} hours. How far does it go in total?",
        f"{s1} * {h1} + {s2} * {h2}", Fraction(s1 * h1 + s2 * h2), "It goes {result} km in total.",
    )


def average(rng: random.Random) -> Problem:
    who, scores = rng.choice(PEOPLE), [rng.randint(40, 100) for _ in range(3)]
    return Problem(
        f"{who} scored {scores[0]}, {scores[1]} and {scores[2]} on 3 tests. What is the average score, "
        "rounded to 2 decimal places?",
        f"round(({scores[0]} + {scores[1]} + {scores[2]}) / 3, 2)", round_half_up(Fraction(sum(scores), 3)),
        f"{who}'s average score is {{result}}.", rounded=True,
    )  # fmt: skip


def bare(rng: random.Random) -> Problem:
    a, b, c = rng.randint(2, 500), rng.randint(2, 99), rng.randint(2, 50)
    expression = rng.choice([f"{a} + {b} * {c}", f"({a} - {b}) * {c}", f"{a} * {b} - {c}", f"({a} + {b}) / {c}"])
    value = _eval_plain(expression)
    if value.denominator not in (1, 2, 4, 5, 8, 10, 20, 25, 50, 100):  # keep results short decimals
        expression, value = f"round({expression}, 2)", round_half_up(value)
    return Problem(f"Calculate {expression}.", expression, value, "The result is {result}.")


def _eval_plain(expression: str) -> Fraction:
    a, op1, b, op2, c = expression.replace("(", "").replace(")", "").split()
    left = expression.startswith("(")
    ops = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "/": lambda x, y: x / y}
    x, y, z = Fraction(a), Fraction(b), Fraction(c)
    if left or op2 in "+-":
        return ops[op2](ops[op1](x, y), z)
    return ops[op1](x, ops[op2](y, z))


# More situations for the same few operations, each in several wordings: a small model learns to map words
# to an expression only when it sees the same operation dressed many ways.

JOBS = ["gardener", "tutor", "courier", "painter", "baker", "driver"]
GOODS = ["flour", "rice", "paint", "sand", "coffee", "seed"]


def _pick(rng: random.Random, phrasings: list[str], **values: object) -> str:
    return rng.choice(phrasings).format(**values)


def percent_up(rng: random.Random) -> Problem:
    pct = rng.choice([5, 8, 10, 12, 15, 18, 20, 25])
    price, text = _money(rng, 10, 400)
    who, item, job = rng.choice(PEOPLE), rng.choice(ITEMS), rng.choice(JOBS)
    question = _pick(rng, [
        "A {item} costs ${t} before a {p}% sales tax. What does it cost with the tax?",
        "The shop raises the ${t} price of a {item} by {p}%. What is the new price?",
        "{who} the {job} charges ${t} and adds a {p}% fee. What is the total charge?",
        "A hotel bill is ${t} plus a {p}% service charge. How much is the bill in total?",
        "{who} earns ${t} a day and gets a {p}% raise. How much does {who} earn a day now?",
    ], t=text, p=pct, item=item, who=who, job=job)
    return Problem(question, f"{text} * (100 + {pct}) / 100", price * (100 + pct) / 100, "That comes to ${result}.")


def percent_extra(rng: random.Random) -> Problem:
    """A percentage added on top (the opposite of a discount): what is paid altogether."""
    pct = rng.choice([5, 10, 12, 15, 18, 20, 25])
    price, text = _money(rng, 8, 250)
    who, item = rng.choice(PEOPLE), rng.choice(ITEMS)
    question = _pick(rng, [
        "A taxi ride costs ${t} and the driver gets {p}% extra on top. What is paid altogether?",
        "{who} orders food for ${t} plus a {p}% delivery charge. How much is that in total?",
        "The {item} is ${t} before {p}% VAT. What is the price including VAT?",
        "A ${t} invoice gets a {p}% late fee added. What is owed altogether?",
        "A haircut costs ${t} and {who} adds {p}% for the barber. What does {who} pay in total?",
    ], t=text, p=pct, item=item, who=who)
    return Problem(question, f"{text} * (100 + {pct}) / 100", price * (100 + pct) / 100,
                   "Altogether that is ${result}.")  # fmt: skip


def percent_down(rng: random.Random) -> Problem:
    pct = rng.choice([5, 10, 15, 20, 25, 30, 40])
    price, text = _money(rng, 10, 900)
    who, item = rng.choice(PEOPLE), rng.choice(ITEMS)
    question = _pick(rng, [
        "A ${t} coat is reduced by {p}%. What does it cost now?",
        "{who}'s bike was worth ${t} and lost {p}% of its value. What is it worth now?",
        "With a {p}% member discount, what does a ${t} {item} cost?",
        "A budget of ${t} is cut by {p} percent. How much budget is left?",
    ], t=text, p=pct, item=item, who=who)
    return Problem(question, f"{text} * (100 - {pct}) / 100", price * (100 - pct) / 100, "That comes to ${result}.")


def per_hundred(rng: random.Random) -> Problem:
    rate, n = Fraction(rng.randint(15, 150), 10), rng.randint(60, 2000)
    text = f"{rate.numerator // rate.denominator}.{int(rate * 10) % 10}"
    good = rng.choice(GOODS)
    question = _pick(rng, [
        "A printer uses {r} ml of ink per 100 pages. How much ink does it need for {n} pages?",
        "A bakery needs {r} kg of {g} per 100 loaves. How much {g} is needed for {n} loaves?",
        "An electric scooter uses {r} kWh per 100 km. How much energy does a {n} km ride take?",
        "A factory makes {r} kg of waste for every 100 parts. How much waste do {n} parts make?",
        "The recipe calls for {r} grams of salt per 100 servings. How much salt for {n} servings?",
    ], r=text, n=n, g=good)
    return Problem(question, f"{text} * {n} / 100", rate * n / 100, "That takes {result}.")


def rectangle(rng: random.Random) -> Problem:
    a, b = rng.randint(3, 90), rng.randint(3, 90)
    question = _pick(rng, [
        "A room is {a} m long and {b} m wide. What is its floor area in square metres?",
        "A car park has {a} rows of {b} spaces. How many spaces are there?",
        "A field is {a} yards by {b} yards. What is its area in square yards?",
        "A wall has {a} rows of {b} tiles each. How many tiles is that?",
        "An orchard has {a} rows with {b} trees in each row. How many trees are there?",
    ], a=a, b=b)
    return Problem(question, f"{a} * {b}", Fraction(a * b), "That is {result}.")


def earn_then_spend(rng: random.Random) -> Problem:
    who, rate, times = rng.choice(PEOPLE), rng.randint(10, 120), rng.randint(3, 30)
    spent = rng.randint(5, min(300, rate * times - 1))
    question = _pick(rng, [
        "{who} earns ${r} a day for {n} days and pays ${s} for a bus pass. How much money is left?",
        "{who} saves ${r} each month for {n} months, then spends ${s} on shoes. How much is saved now?",
        "A tank fills with {r} litres an hour for {n} hours, then {s} litres are drained. How many litres are left?",
        "A farm packs {r} eggs a day for {n} days and {s} of them break. How many good eggs are there?",
        "A club collects ${r} from each of {n} members and spends ${s} on a trophy. How much remains?",
    ], who=who, r=rate, n=times, s=spent)
    return Problem(question, f"{rate} * {times} - {spent}", Fraction(rate * times - spent), "{result} is left.")


def change_percent(rng: random.Random) -> Problem:
    old = rng.randint(20, 900)
    up = rng.random() < 0.6
    new = old + rng.randint(1, old) if up else old - rng.randint(1, old - 1)
    item, who = rng.choice(ITEMS), rng.choice(PEOPLE)
    if up:
        question = _pick(rng, [
            "The price of a {item} rose from ${a} to ${b}. What is the percentage increase, to 2 decimals?",
            "A town grew from {a} to {b} people. By what percent did it grow (two decimals)?",
            "{who}'s salary went from ${a} to ${b} a week. What is the raise in percent, rounded to 2 places?",
        ], a=old, b=new, item=item, who=who)
        expression = f"round(({new} - {old}) / {old} * 100, 2)"
        value = Fraction(new - old, old) * 100
    else:
        question = _pick(rng, [
            "Sales fell from {a} to {b} units. By what percent did they drop, to 2 decimals?",
            "A {item} was ${a} and is now ${b}. What is the percentage decrease, rounded to 2 places?",
        ], a=old, b=new, item=item)
        expression = f"round(({old} - {new}) / {old} * 100, 2)"
        value = Fraction(old - new, old) * 100
    return Problem(question, expression, round_half_up(value), "That is {result}%.", rounded=True)


def divide_round(rng: random.Random) -> Problem:
    k = rng.randint(3, 15)
    total = rng.randint(k * 3, k * 60)
    good = rng.choice(GOODS)
    question = _pick(rng, [
        "A {n} metre rope is cut into {k} equal pieces. How long is each piece, rounded to 2 decimals?",
        "{n} cookies go into {k} boxes equally. How many cookies per box, as a decimal to two places?",
        "{n} kg of {g} is split evenly into {k} bags. How much is in each bag (2 decimal places)?",
        "A team of {k} shares {n} hours of work equally. How many hours each, rounded to 2 decimals?",
    ], n=total, k=k, g=good)
    return Problem(question, f"round({total} / {k}, 2)", round_half_up(Fraction(total, k)), "Each gets {result}.",
                   rounded=True)  # fmt: skip


def sum_three(rng: random.Random) -> Problem:
    a, b, c = rng.randint(10, 900), rng.randint(10, 900), rng.randint(10, 900)
    who = rng.choice(PEOPLE)
    question = _pick(rng, [
        "{who} walked {a} m, then {b} m, then {c} m. How far did {who} walk?",
        "A shelf holds {a} books, another {b} and a third {c}. How many books in all?",
        "Three trucks carry {a} kg, {b} kg and {c} kg. What is the total load?",
    ], who=who, a=a, b=b, c=c)
    return Problem(question, f"{a} + {b} + {c}", Fraction(a + b + c), "The total is {result}.")


TRAIN_TEMPLATES: list[Template] = [
    shopping_total, percent_of, discount, unit_price, difference, product, split_bill, travel, average, bare,
    percent_up, percent_extra, percent_down, per_hundred, rectangle, earn_then_spend, change_percent, divide_round, sum_three,
]  # fmt: skip


# --- held-out eval templates: other situations, other wording ------------------------------------------------


def tip(rng: random.Random) -> Problem:
    pct = rng.choice([10, 12, 15, 18, 20, 22])
    price, text = _money(rng, 15, 150)
    return Problem(
        f"Dinner came to ${text} and we want to leave a {pct}% tip. What will we pay altogether?",
        f"{text} * (100 + {pct}) / 100", price * (100 + pct) / 100, "You will pay ${result} altogether.",
    )


def area(rng: random.Random) -> Problem:
    a, b = rng.randint(3, 80), rng.randint(3, 80)
    return Problem(
        f"My vegetable plot measures {a} metres by {b} metres. How many square metres is that?",
        f"{a} * {b}", Fraction(a * b), "That is {result} square metres.",
    )


def savings(rng: random.Random) -> Problem:
    who, weekly, weeks, spent = rng.choice(PEOPLE), rng.randint(15, 90), rng.randint(4, 30), rng.randint(10, 200)
    return Problem(
        f"{who} puts aside ${weekly} every week for {weeks} weeks and then uses ${spent} of it on a gift. "
        "How much money remains?",
        f"{weekly} * {weeks} - {spent}", Fraction(weekly * weeks - spent), "${result} remains.",
    )


def fuel(rng: random.Random) -> Problem:
    per100, km = Fraction(rng.randint(40, 120), 10), rng.randint(50, 900)
    text = f"{per100.numerator // per100.denominator}.{int(per100 * 10) % 10}"
    return Problem(
        f"My van burns {text} litres of diesel per 100 km. How much diesel do I need for a {km} km trip?",
        f"{text} * {km} / 100", per100 * km / 100, "You need {result} litres of diesel.",
    )


def percent_change(rng: random.Random) -> Problem:
    old = rng.randint(20, 400)
    new = old + rng.randint(1, old)
    return Problem(
        f"Rent went up from ${old} to ${new} a month. By what percentage did it increase (two decimals)?",
        f"round(({new} - {old}) / {old} * 100, 2)", round_half_up(Fraction(new - old, old) * 100),
        "It increased by {result}%.", rounded=True,
    )  # fmt: skip


def share_out(rng: random.Random) -> Problem:
    kids, each = rng.randint(3, 12), rng.randint(4, 40)
    total = kids * each + rng.randint(0, kids - 1)
    return Problem(
        f"If {total} marbles are shared among {kids} children, how many marbles does each child get, as a decimal "
        "rounded to two places?",
        f"round({total} / {kids}, 2)", round_half_up(Fraction(total, kids)), "Each child gets {result} marbles.",
        rounded=True,
    )  # fmt: skip


EVAL_TEMPLATES: list[Template] = [tip, area, savings, fuel, percent_change, share_out]


def check(problem: Problem, observation: str) -> None:
    """The calculator's output must be the template's own value, written as the calculator writes it."""
    # The calculator tool's module brings langchain_core (~0.5 s): deferred so that `lorastack`'s CLI, which reads
    # SynthConfig for `data synth`'s options, does not load it for every command.
    from lorastack.tools.calculator import format_number

    if observation != format_number(problem.value):
        raise AssertionError(
            f"calculator gave {observation!r} for {problem.expression!r}, expected {format_number(problem.value)}"
        )
