"""Two- and three-step word problems for the calculator (``variety: broad``), each with a short plan.

The plan is the assistant's text before its tool call ("Area: 14 * 11 square metres. Cost: area * 32.5."): a
135M model picks the right expression far more often when it first names the steps. Every template has several
situations and wordings of one structure (totals of several items, area or perimeter times a price, rate times a
time with minutes, distance over time, chained percentages, unit conversions, fixed plus per-unit charges, a part
then the rest), and its value is computed here with :class:`~fractions.Fraction`.
"""

from __future__ import annotations

import random
from fractions import Fraction

from lorastack.finetune.synth import everyday
from lorastack.finetune.synth.arithmetic import PEOPLE, Problem, _money, round_half_up

GOODS = [("lamp", "lamps"), ("chair", "chairs"), ("towel", "towels"), ("jar of honey", "jars of honey"),
         ("bag of rice", "bags of rice"), ("ball", "balls"), ("cushion", "cushions"), ("book", "books"),
         ("box of tea", "boxes of tea"), ("pair of socks", "pairs of socks"), ("bulb", "bulbs"), ("kite", "kites")]  # fmt: skip
SURFACES = [("kitchen floor", "tiling", "metres"), ("garden", "new turf", "metres"), ("roof", "new slates", "metres"),
            ("hall", "carpet", "metres"), ("patio", "paving", "feet"), ("wall", "painting", "metres"),
            ("yard", "gravel", "yards"), ("office floor", "varnishing", "feet")]  # fmt: skip


def _dec(rng: random.Random, low: int, high: int, places: int = 1) -> tuple[Fraction, str]:
    """A decimal between low and high with ``places`` digits after the point: (value, text)."""
    scale = 10**places
    n = rng.randint(low * scale, high * scale)
    return Fraction(n, scale), f"{n // scale}.{n % scale:0{places}d}" if places else str(n)


def several_items(rng: random.Random) -> Problem:
    who, count = rng.choice(PEOPLE), rng.choice([2, 3, 3, 4])
    goods = rng.sample(GOODS, count)
    parts = []
    for one, many in goods:
        q = rng.randint(1, 12)
        price, text = _money(rng, 1, 45)
        parts.append((q, price, text, one if q == 1 else many))
    style = rng.randrange(3)
    if style == 0:
        listed = ", ".join(f"{q} {name} at ${t} each" for q, _, t, name in parts[:-1])
        q, _, t, name = parts[-1]
        question = f"{who} buys {listed} and {q} {name} at ${t} each. What is the total?"
    elif style == 1:
        listed = "; ".join(f"{name}: {q} x ${t}" for q, _, t, name in parts)
        question = f"Shopping list for {who}: {listed}. How much does the whole list cost?"
    else:
        listed = ", ".join(f"{q} {name} (${t} apiece)" for q, _, t, name in parts)
        question = f"An order contains {listed}. What is the order worth in dollars?"
    expression = " + ".join(f"{q} * {t}" for q, _, t, _ in parts)
    value = sum((q * p for q, p, _, _ in parts), Fraction(0))
    plan = "Each item: quantity times price, then add them up."
    return Problem(question, expression, value, "The total is ${result}.", plan=plan)


def area_times_price(rng: random.Random) -> Problem:
    surface, work, unit = rng.choice(SURFACES)
    (a, ta), (b, tb) = _side(rng), _side(rng)
    price, tp = _money(rng, 1, 90)
    question = rng.choice([
        "The {s} is {a} {u} long and {b} {u} wide. {W} costs ${p} per square {one}. What does {w} the {s} cost?",
        "A rectangular {s} measures {a} by {b} {u}. At ${p} a square {one}, how much is the {w}?",
        "{W} a {a} {u} by {b} {u} {s} is priced at ${p} per square {one}. Find the total price.",
    ]).format(s=surface, a=ta, b=tb, u=unit, one=unit[:-1] if unit != "feet" else "foot", p=tp,
              W=work[0].upper() + work[1:], w=work)  # fmt: skip
    plan = f"Area: {ta} * {tb} square {unit}. Cost: area times {tp}."
    return Problem(question, f"{ta} * {tb} * {tp}", a * b * price, "It costs ${result}.", plan=plan)


def _side(rng: random.Random) -> tuple[Fraction, str]:
    if rng.random() < 0.6:
        n = rng.randint(2, 60)
        return Fraction(n), str(n)
    return _dec(rng, 1, 30, 1)


def perimeter_times_price(rng: random.Random) -> Problem:
    price, tp = _money(rng, 2, 40)
    if rng.random() < 0.5:
        side = rng.randint(5, 120)
        thing = rng.choice(["square field", "square pen", "square lawn"])
        question = (
            f"A {thing} has sides of {side} m. A fence costs ${tp} per metre. What does fencing it all round cost?"
        )
        return Problem(question, f"4 * {side} * {tp}", 4 * side * price, "The fence costs ${result}.",
                       plan=f"Perimeter: 4 * {side} m. Cost: perimeter times {tp}.")  # fmt: skip
    a, b = rng.randint(5, 90), rng.randint(5, 90)
    question = (f"Edging for a {a} m by {b} m flower bed costs ${tp} a metre. How much is edging for the whole "
                "border?")  # fmt: skip
    return Problem(question, f"2 * ({a} + {b}) * {tp}", 2 * (a + b) * price, "The edging costs ${result}.",
                   plan=f"Perimeter: 2 * ({a} + {b}) m. Cost: perimeter times {tp}.")  # fmt: skip


def speed_times_time(rng: random.Random) -> Problem:
    speed, ts = _dec(rng, 3, 110, rng.choice([0, 1]))
    hours, minutes = rng.randint(1, 6), rng.choice([10, 15, 20, 30, 40, 45, 50])
    who = rng.choice(PEOPLE)
    question = rng.choice([
        "{who} drives at {s} km/h for {h} hours and {m} minutes. How far does {who} get, in km?",
        "A boat keeps up {s} km per hour for {h} h {m} min. What distance does it cover in kilometres?",
        "Jogging at {s} km an hour, how many km does {who} run in {h} hours {m} minutes?",
    ]).format(who=who, s=ts, h=hours, m=minutes)  # fmt: skip
    plan = f"Time in hours: {hours} + {minutes} / 60. Distance: speed times time."
    return Problem(question, f"{ts} * ({hours} + {minutes} / 60)", speed * (hours + Fraction(minutes, 60)),
                   "That is {result} km.", plan=plan)  # fmt: skip


def rate_times_hours(rng: random.Random) -> Problem:
    rate, tr = _money(rng, 9, 95)
    h1, th1 = _dec(rng, 2, 10, rng.choice([0, 1]))
    h2, th2 = _dec(rng, 2, 10, rng.choice([0, 1]))
    who = rng.choice(PEOPLE)
    question = rng.choice([
        "{who} bills ${r} per hour: {a} h for the first job, {b} h for the second. Total pay?",
        "At ${r} an hour, what does a plumber charge for a {a} hour visit plus a {b} hour visit?",
        "A tutor's rate is ${r}/hour. Lessons this week took {a} and {b} hours. How much is owed?",
    ]).format(who=who, r=tr, a=th1, b=th2)  # fmt: skip
    return Problem(question, f"{tr} * ({th1} + {th2})", rate * (h1 + h2), "That comes to ${result}.",
                   plan=f"Hours: {th1} + {th2}. Pay: hours times {tr}.")  # fmt: skip


def flow_over_time(rng: random.Random) -> Problem:
    per_min, hours = rng.randint(5, 2400), rng.choice([Fraction(1, 2), 1, Fraction(3, 2), 2, 3, 4, Fraction(5, 2)])
    th = str(float(hours)).removesuffix(".0")
    thing = rng.choice([("A hose delivers", "litres"), ("A conveyor moves", "parcels"), ("A press prints", "sheets")])
    question = f"{thing[0]} {per_min} {thing[1]} every minute. What total does that make over {th} hours?"
    return Problem(question, f"{per_min} * {th} * 60", per_min * hours * 60, "That is {result}.",
                   plan=f"Minutes: {th} * 60. Amount: {per_min} per minute times the minutes.")  # fmt: skip


def average_speed(rng: random.Random) -> Problem:
    hours, th = _dec(rng, 1, 12, rng.choice([1, 2]))
    distance = rng.randint(20, 900)
    who = rng.choice(PEOPLE)
    if rng.random() < 0.6:
        question = rng.choice([
            "A ferry crosses {d} km in {t} hours. What is its average speed in km/h?",
            "{who} cycled {d} km in {t} hours. How many km per hour is that on average?",
            "It took a lorry {t} hours to drive {d} km. What was the mean speed, in kilometres per hour?",
        ]).format(d=distance, t=th, who=who)  # fmt: skip
        return Problem(question, f"{distance} / {th}", distance / hours, "The average speed is {result} km/h.",
                       plan="Speed: distance divided by time (already in hours).")  # fmt: skip
    speed = rng.randint(20, 130)
    question = f"How many minutes does a {distance} km trip take at {speed} km/h?"
    return Problem(question, f"{distance} / {speed} * 60", Fraction(distance, speed) * 60, "It takes {result} minutes.",
                   plan="Hours: distance divided by speed. Minutes: hours times 60.")  # fmt: skip


def percent_chain(rng: random.Random) -> Problem:
    a, b = rng.choice([5, 10, 15, 20, 25, 30, 40]), rng.choice([2, 3, 5, 10, 15, 20])
    price, tp = _money(rng, 20, 2000)
    style = rng.randrange(4)
    if style == 0:
        question = (f"A sofa priced ${tp} is reduced by {a}%, and at the till a coupon takes {b}% off the reduced "
                    "price. What is paid?")  # fmt: skip
        return Problem(
            question,
            f"{tp} * (100 - {a}) / 100 * (100 - {b}) / 100",
            price * (100 - a) / 100 * (100 - b) / 100,
            "The price paid is ${result}.",
            plan=f"After {a}% off: times (100 - {a}) / 100. Then {b}% off that: times (100 - {b}) / 100.",
        )
    if style == 1:
        question = (f"Savings of ${tp} earn {a}% in year one and {b}% in year two. What are they worth after the two "
                    "years?")  # fmt: skip
        return Problem(
            question,
            f"{tp} * (100 + {a}) / 100 * (100 + {b}) / 100",
            price * (100 + a) / 100 * (100 + b) / 100,
            "They are worth ${result}.",
            plan=f"Year one: times (100 + {a}) / 100. Year two: times (100 + {b}) / 100.",
        )
    n = rng.randint(200, 90000)
    if style == 2:
        question = f"Take {b}% of {a}% of {n}. What do you get?"
        return Problem(question, f"{b} / 100 * {a} / 100 * {n}", Fraction(a * b * n, 10000), "That is {result}.",
                       plan=f"{a}% of {n} first, then {b}% of that.")  # fmt: skip
    group, sub = rng.choice([("adults", "drive"), ("members", "vote"), ("pupils", "walk to school")])
    question = f"Of {n} people, {a}% are {group}, and {b}% of the {group} {sub}. How many {group} {sub}?"
    return Problem(question, f"{n} * {a} / 100 * {b} / 100", Fraction(a * b * n, 10000), "That is {result}.",
                   plan=f"{group.capitalize()}: {a}% of {n}. Then {b}% of those.")  # fmt: skip


CONVERSIONS = [  # (from, to, factor as text, multiply or divide)
    ("miles", "kilometres", "1.609", "*"), ("kilometres", "miles", "1.609", "/"), ("pounds", "kilograms", "0.4536", "*"),
    ("kilograms", "pounds", "0.4536", "/"), ("inches", "centimetres", "2.54", "*"), ("feet", "metres", "0.3048", "*"),
    ("metres", "feet", "0.3048", "/"), ("ounces", "grams", "28.35", "*"), ("gallons", "litres", "3.785", "*"),
    ("litres", "gallons", "3.785", "/"),
]  # fmt: skip


def unit_conversion(rng: random.Random) -> Problem:
    style = rng.randrange(4)
    if style < 2:
        src, dst, factor, op = rng.choice(CONVERSIONS)
        amount, ta = _dec(rng, 1, 500, rng.choice([0, 1]))
        one = {"*": f"1 {src[:-1] if src != 'feet' else 'foot'} = {factor} {dst}",
               "/": f"1 {dst[:-1] if dst != 'feet' else 'foot'} = {factor} {src}"}[op]  # fmt: skip
        question = rng.choice(["Convert {a} {s} to {d} ({one}), to two decimals.",
                               "How many {d} are {a} {s}? Use {one} and round to 2 decimals."]).format(
            a=ta, s=src, d=dst, one=one)  # fmt: skip
        value = amount * Fraction(factor) if op == "*" else amount / Fraction(factor)
        return Problem(question, f"round({ta} {op} {factor}, 2)", round_half_up(value), f"That is {{result}} {dst}.",
                       rounded=True, plan=f"{'Multiply' if op == '*' else 'Divide'} by {factor}.")  # fmt: skip
    if style == 2:
        h, m = rng.randint(1, 9), rng.randint(1, 59)
        question = f"How many seconds are there in {h} hours and {m} minutes?"
        return Problem(question, f"({h} * 60 + {m}) * 60", Fraction((h * 60 + m) * 60), "That is {result} seconds.",
                       plan=f"Minutes: {h} * 60 + {m}. Seconds: minutes times 60.")  # fmt: skip
    v = rng.randint(2, 60)
    question = f"An object moves at {v} m/s. What is that in kilometres per hour?"
    return Problem(question, f"{v} * 3600 / 1000", Fraction(v * 3600, 1000), "That is {result} km/h.",
                   plan="Metres per hour: times 3600. Kilometres: divide by 1000.")  # fmt: skip


def fixed_plus_per_unit(rng: random.Random) -> Problem:
    fee, tf = _money(rng, 2, 120)
    per, tp = _money(rng, 0, 9)
    n = rng.randint(2, 400)
    thing = rng.choice([("a taxi", "km", "a"), ("a parking garage", "hour", "an"), ("an internet plan", "GB", "a"),
                        ("a printing shop", "page", "a"), ("a courier", "kg", "a")])  # fmt: skip
    question = (f"{thing[0].capitalize()} charges a base fee of ${tf} and ${tp} per {thing[1]}. What is the charge for "
                f"{n} {thing[1]}{'s' if thing[1] in ('hour', 'page') else ''}?")  # fmt: skip
    return Problem(question, f"{tf} + {n} * {tp}", fee + n * per, "The charge is ${result}.",
                   plan=f"Per-{thing[1]} part: {n} * {tp}. Then add the base fee {tf}.")  # fmt: skip


def part_then_rest(rng: random.Random) -> Problem:
    style = rng.randrange(3)
    if style == 0:
        cap, pct = rng.randint(50, 9000), rng.choice([10, 15, 20, 25, 30, 40, 55, 60, 75, 80])
        question = f"A silo holds {cap} tonnes and is {pct}% full. How many more tonnes fit in?"
        return Problem(
            question,
            f"{cap} - {cap} * {pct} / 100",
            cap - Fraction(cap * pct, 100),
            "{result} more tonnes fit.",
            plan=f"Already in: {pct}% of {cap}. Space left: {cap} minus that.",
        )
    if style == 1:
        total, tt = _money(rng, 100, 9000)
        tax, k = rng.choice([10, 12, 18, 20, 25, 30]), rng.randint(2, 6)
        question = f"From a ${tt} prize, {tax}% goes to tax and the rest is split equally between {k} winners. What does each get?"
        return Problem(
            question,
            f"{tt} * (100 - {tax}) / 100 / {k}",
            total * (100 - tax) / 100 / k,
            "Each gets ${result}.",
            plan=f"After tax: {tt} * (100 - {tax}) / 100. Each: that divided by {k}.",
        )
    bottle, glasses, extra = rng.choice([500, 750, 1000, 1500, 2000]), rng.randint(2, 10), rng.choice([20, 30, 50, 100])
    question = f"{bottle} ml of soup is shared by {glasses} bowls and each bowl gets {extra} ml of cream. How many ml per bowl?"
    return Problem(question, f"{bottle} / {glasses} + {extra}", Fraction(bottle, glasses) + extra, "{result} ml each.",
                   plan=f"Soup per bowl: {bottle} / {glasses}. Then add {extra}.")  # fmt: skip


def times_then_plus(rng: random.Random) -> Problem:
    k, n, m = rng.randint(2, 6), rng.randint(3, 15), rng.randint(2, 20)
    who = rng.choice(PEOPLE)
    question = rng.choice([
        "{who}'s grandmother's age is {k} times {who}'s age of {n}. What age does she reach {m} years from now?",
        "A tree measures {k} times a {n} m pole. What height does it reach after growing another {m} m?",
    ]).format(who=who, k=k, n=n, m=m)  # fmt: skip
    return Problem(question, f"{k} * {n} + {m}", Fraction(k * n + m), "The answer is {result}.",
                   plan=f"Now: {k} * {n}. Then add {m}.")  # fmt: skip


def each_needs(rng: random.Random) -> Problem:
    n, a = rng.randint(5, 40), rng.randint(2, 6)
    (p, tp), (q, tq) = _money(rng, 0, 9), _money(rng, 1, 25)
    question = f"{n} campers each need {a} tent pegs (${tp} a peg) plus a torch for ${tq}. What does all the gear cost?"
    return Problem(question, f"{n} * ({a} * {tp} + {tq})", n * (a * p + q), "It costs ${result}.",
                   plan=f"One camper: {a} * {tp} + {tq}. All: times {n}.")  # fmt: skip


BROAD_TEMPLATES = [
    several_items, area_times_price, perimeter_times_price, speed_times_time, rate_times_hours, flow_over_time,
    average_speed, percent_chain, unit_conversion, fixed_plus_per_unit, part_then_rest, times_then_plus, each_needs,
    *everyday.TEMPLATES,  # quantities in words, constants the reader knows, clock times (see that module)
]  # fmt: skip
