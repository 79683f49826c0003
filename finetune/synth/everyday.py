"""Word problems whose numbers are not all written as digits (``variety: broad``), each with a short plan.

What the first broad adapter got wrong on hand-written problems: quantities in words (three, a dozen, half), a
constant the reader must know (7 days in a week, 100 cents in a dollar, 1000 ml in a litre, 12 months in a
year), counts added before one price multiplies them, "once every N seconds", dividing a job by a rate, clock
times, energy and fuel costs, a rise then a fall in percent, and a conversion whose factor is given the other
way round. Large numbers are written with thousands separators half the time, as people write them (the
calculator reads both). Values are computed here with :class:`~fractions.Fraction`.
"""

from __future__ import annotations

import random
from fractions import Fraction

from lorastack.finetune.synth.arithmetic import PEOPLE, Problem, _money, round_half_up

WORD_COUNTS = [(2, "two"), (2, "a pair of"), (3, "three"), (4, "four"), (5, "five"), (6, "six"),
               (6, "half a dozen"), (8, "eight"), (10, "ten"), (12, "a dozen"), (24, "two dozen")]  # fmt: skip
PRODUCE = [("melon", "melons"), ("loaf of bread", "loaves of bread"), ("bunch of grapes", "bunches of grapes"),
           ("tin of beans", "tins of beans"), ("bottle of oil", "bottles of oil"), ("egg box", "egg boxes"),
           ("bag of flour", "bags of flour"), ("pineapple", "pineapples")]  # fmt: skip


def _big(n: int, rng: random.Random) -> str:
    """``n`` as people write it: 12500 or 12,500 (half the time for numbers from 1000 up)."""
    return f"{n:,}" if n >= 1000 and rng.random() < 0.5 else str(n)


def word_quantities(rng: random.Random) -> Problem:
    (n1, w1), (n2, w2) = rng.sample(WORD_COUNTS, 2)
    (one1, many1), (one2, many2) = rng.sample(PRODUCE, 2)
    (p1, t1), (p2, t2) = _money(rng, 1, 12), _money(rng, 1, 12)
    fee, tf = _money(rng, 1, 30)
    who = rng.choice(PEOPLE)
    question = rng.choice([
        "{who} takes {w1} {m1} priced ${t1} apiece and {w2} {m2} at ${t2} apiece, plus a basket for ${tf}. "
        "How much is spent altogether?",
        "At the market: {w1} {m1} (${t1} for each one), {w2} {m2} (${t2} for each one) and a ${tf} delivery "
        "charge. What is the bill?",
    ]).format(who=who, w1=w1, m1=many1, t1=t1, w2=w2, m2=many2, t2=t2, tf=tf)  # fmt: skip
    plan = f"{w1.capitalize()} is {n1}, {w2} is {n2}. Total: {n1} * {t1} + {n2} * {t2} + {tf}."
    return Problem(question, f"{n1} * {t1} + {n2} * {t2} + {tf}", n1 * p1 + n2 * p2 + fee, "The bill is ${result}.",
                   plan=plan)  # fmt: skip


def cents_to_dollars(rng: random.Random) -> Problem:
    a, ca = rng.randint(20, 400), rng.randint(2, 95)
    b, cb = rng.randint(5, 120), rng.randint(10, 99)
    extra = rng.randint(5, 250)
    things = rng.choice([("nails", "brackets", "saw"), ("stamps", "envelopes", "printer cartridge"),
                         ("buttons", "zips", "sewing kit"), ("seed packets", "pots", "watering can")])  # fmt: skip
    question = (f"A workshop buys {a} {things[0]} for {ca} cents each, {b} {things[1]} for {cb} cents each and a "
                f"{things[2]} costing {extra} dollars. What is the total in dollars?")  # fmt: skip
    plan = f"Cents to dollars: divide by 100. Total: {a} * {ca} / 100 + {b} * {cb} / 100 + {extra}."
    value = Fraction(a * ca + b * cb, 100) + extra
    return Problem(question, f"{a} * {ca} / 100 + {b} * {cb} / 100 + {extra}", value, "The total is ${result}.",
                   plan=plan)  # fmt: skip


def counts_then_price(rng: random.Random) -> Problem:
    week = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    days = rng.sample(week, rng.choice([2, 3, 4]))
    counts = [rng.randint(40, 900) for _ in days]
    price, tp = _money(rng, 2, 30)
    venue = rng.choice([("a museum", "visitors", "an entry fee"), ("a swimming pool", "swimmers", "a ticket price"),
                        ("a ferry", "passengers", "a fare"), ("a climbing gym", "climbers", "a day pass")])  # fmt: skip
    listed = ", ".join(f"{n} on {d}" for n, d in zip(counts[:-1], days[:-1])) + f" and {counts[-1]} on {days[-1]}"
    question = (f"{venue[0].capitalize()} counted {listed}. With {venue[2]} of ${tp} per person, how much was taken "
                "over those days?")  # fmt: skip
    total = " + ".join(map(str, counts))
    plan = f"People: {total}. Money: people times {tp}."
    return Problem(question, f"({total}) * {tp}", sum(counts) * price, "They took ${result}.", plan=plan)


CONSTANT_RATES = [  # (per what, how many in the longer span, its name, the longer span), 7 days in a week ...
    ("day", 7, "week"), ("day", 30, "30-day month"), ("month", 12, "year"), ("week", 52, "year"),
    ("hour", 24, "day"), ("minute", 60, "hour"), ("day", 365, "year"),
]  # fmt: skip


def known_constant(rng: random.Random) -> Problem:
    unit, factor, span = rng.choice(CONSTANT_RATES)
    spans = rng.randint(2, 9)
    style = rng.randrange(3)
    if style == 0:
        amount, ta = _money(rng, 1, 60)
        question = (f"A subscription costs ${ta} per {unit}. What does it come to over {spans} {span}s, if each "
                    f"{span} has {factor} {unit}s?" if rng.random() < 0.3 else
                    f"Someone spends ${ta} every {unit}. How much is that across {spans} {span}s?")  # fmt: skip
        plan = f"A {span} is {factor} {unit}s. Total: {ta} * {factor} * {spans}."
        return Problem(question, f"{ta} * {factor} * {spans}", amount * factor * spans, "That comes to ${result}.",
                       plan=plan)  # fmt: skip
    if style == 1:
        amount, ta = _money(rng, 0, 3)
        thing = rng.choice(["A leaking pipe loses", "A small spring gives", "A dripping gutter sheds"])
        question = f"{thing} {ta} litres each {unit}. How many litres is that in {spans} {span}s?"
        plan = f"{unit.capitalize()}s in {spans} {span}s: {factor} * {spans}. Litres: {ta} times that."
        return Problem(question, f"{ta} * {factor} * {spans}", amount * factor * spans, "That is {result} litres.",
                       plan=plan)  # fmt: skip
    fee, tf = _money(rng, 10, 150)
    per, tp = _money(rng, 5, 80)
    question = (f"A club asks a one-off ${tf} to sign up, then ${tp} each month. What does a member pay in the "
                f"first {spans} years?")  # fmt: skip
    plan = f"Months: 12 * {spans}. Total: {tf} + months times {tp}."
    return Problem(question, f"{tf} + 12 * {spans} * {tp}", fee + 12 * spans * per, "The member pays ${result}.",
                   plan=plan)  # fmt: skip


def every_n_seconds(rng: random.Random) -> Problem:
    n, hours = rng.choice([2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 45]), rng.randint(1, 9)
    thing = rng.choice([("A beacon blinks", "blinks"), ("A sprinkler turns", "turns"), ("A pump strokes", "strokes"),
                        ("A buoy's bell rings", "rings")])  # fmt: skip
    question = f"{thing[0]} one time every {n} seconds. How many {thing[1]} are there in {hours} hours?"
    plan = f"Seconds in {hours} hours: {hours} * 3600. Count: that divided by {n}."
    return Problem(question, f"{hours} * 3600 / {n}", Fraction(hours * 3600, n), "There are {result}.", plan=plan)


def job_over_rate(rng: random.Random) -> Problem:
    rate = rng.randint(4, 90)
    job = rate * rng.randint(3, 80) + rng.choice([0, 0, rate // 2])
    thing = rng.choice([("A copier handles", "sheets", "copy run"), ("A bottling line fills", "bottles", "order"),
                        ("A scanner reads", "pages", "archive box"), ("A baker shapes", "buns", "batch")])  # fmt: skip
    question = (f"{thing[0]} {rate} {thing[1]} per minute. A {thing[2]} has {_big(job, rng)} {thing[1]}. How many "
                "minutes will it take?")  # fmt: skip
    plan = f"Minutes: {job} divided by {rate} per minute."
    return Problem(question, f"{job} / {rate}", Fraction(job, rate), "It takes {result} minutes.", plan=plan)


def clock_span(rng: random.Random) -> Problem:
    h1, m1 = rng.randint(6, 12), rng.choice([0, 10, 15, 20, 30, 40, 45])
    h2, m2 = h1 + rng.randint(1, 5), rng.choice([0, 5, 15, 30, 45, 50])
    speed, ts = rng.choice([(Fraction(9, 2), "4.5"), (Fraction(5), "5"), (Fraction(6), "6"), (Fraction(12), "12"),
                            (Fraction(18), "18"), (Fraction(21, 2), "10.5")])  # fmt: skip
    who = rng.choice(PEOPLE)
    question = (f"{who} keeps a pace of {ts} km per hour, setting off at {h1}:{m1:02d} and stopping at {h2}:{m2:02d}. "
                "What distance is covered, in km?")  # fmt: skip
    plan = f"Hours: ({h2} * 60 + {m2} - ({h1} * 60 + {m1})) / 60. Distance: {ts} times the hours."
    minutes = h2 * 60 + m2 - (h1 * 60 + m1)
    return Problem(question, f"{ts} * ({h2} * 60 + {m2} - ({h1} * 60 + {m1})) / 60", speed * minutes / 60,
                   "That is {result} km.", plan=plan)  # fmt: skip


def energy_cost(rng: random.Random) -> Problem:
    kw, tk = rng.choice([(Fraction(3, 2), "1.5"), (Fraction(2), "2"), (Fraction(5, 2), "2.5"), (Fraction(3), "3"),
                         (Fraction(9, 10), "0.9"), (Fraction(1, 2), "0.5")])  # fmt: skip
    hours = rng.randint(2, 12)
    price, tp = _dec_price(rng)
    device = rng.choice(["An oven", "A kiln", "A dryer", "A space heater", "An air conditioner"])
    question = (f"{device} uses {tk} kW. Power is billed at ${tp} per kWh. What does running it for {hours} hours "
                "cost?")  # fmt: skip
    plan = f"Energy: {tk} kW * {hours} h in kWh. Cost: energy times {tp}."
    return Problem(question, f"{tk} * {hours} * {tp}", kw * hours * price, "It costs ${result}.", plan=plan)


def _dec_price(rng: random.Random) -> tuple[Fraction, str]:
    cents = rng.randint(8, 45)
    return Fraction(cents, 100), f"0.{cents:02d}"


def fuel_per_100km(rng: random.Random) -> Problem:
    use, tu = rng.choice([(Fraction(5), "5"), (Fraction(11, 2), "5.5"), (Fraction(7), "7"), (Fraction(15, 2), "7.5"),
                          (Fraction(9), "9"), (Fraction(42, 5), "8.4")])  # fmt: skip
    km = rng.randint(50, 1200)
    price, tp = _money(rng, 1, 2)
    question = (f"A van needs {tu} litres per 100 km, and diesel is ${tp} a litre. How much does the diesel for "
                f"{_big(km, rng)} km cost?")  # fmt: skip
    plan = f"Litres: {tu} * {km} / 100. Cost: litres times {tp}."
    return Problem(question, f"{tu} * {km} / 100 * {tp}", use * km / 100 * price, "The diesel costs ${result}.",
                   plan=plan)  # fmt: skip


def up_then_down(rng: random.Random) -> Problem:
    a, b = rng.choice([5, 10, 12, 15, 20, 25, 30]), rng.choice([5, 10, 15, 20, 25])
    start = rng.randint(20, 60000)
    up_first = rng.random() < 0.5
    ts = _big(start, rng)
    thing = rng.choice([("A stock price of", "dollars"), ("A town of", "people"), ("A herd of", "animals"),
                        ("Monthly sales of", "units")])  # fmt: skip
    if up_first:
        question = f"{thing[0]} {ts} {thing[1]} goes up by {a}%, and then the new figure drops by {b}%. What is it now?"
        expression = f"{start} * (100 + {a}) / 100 * (100 - {b}) / 100"
        value = Fraction(start * (100 + a) * (100 - b), 10000)
        plan = f"Up {a}%: times (100 + {a}) / 100. Then down {b}%: times (100 - {b}) / 100."
    else:
        question = f"{thing[0]} {ts} {thing[1]} falls by {a}%, then climbs {b}% from there. Where does it end?"
        expression = f"{start} * (100 - {a}) / 100 * (100 + {b}) / 100"
        value = Fraction(start * (100 - a) * (100 + b), 10000)
        plan = f"Down {a}%: times (100 - {a}) / 100. Then up {b}%: times (100 + {b}) / 100."
    return Problem(question, expression, value, "It ends at {result}.", plan=plan)


CONVERSION_FACTS = [  # (small unit, big unit, small units in one big one as text)
    ("centimetres", "inch", "2.54"), ("kilometres", "mile", "1.609"), ("grams", "ounce", "28.35"),
    ("kilograms", "stone", "6.35"), ("litres", "gallon", "3.785"), ("metres", "yard", "0.9144"),
    ("millilitres", "pint", "568"), ("grams", "pound", "453.6"),
]  # fmt: skip


def stated_conversion(rng: random.Random) -> Problem:
    small, big, factor = rng.choice(CONVERSION_FACTS)
    amount, f = rng.randint(2, 400), Fraction(factor)
    plural = f"{big}es" if big.endswith("ch") else f"{big}s"
    if rng.random() < 0.5:  # big -> small: multiply
        question = rng.choice([
            "Given that one {big} equals {factor} {small}, express {amount} {plural} in {small}, to 2 decimals.",
            "There are {factor} {small} in a {big}. Rounded to 2 decimals, how many {small} make {amount} {plural}?",
        ]).format(big=big, factor=factor, small=small, amount=amount, plural=plural)  # fmt: skip
        plan = f"{small.capitalize()} per {big}: {factor}. Multiply {amount} by {factor}."
        return Problem(question, f"round({amount} * {factor}, 2)", round_half_up(amount * f),
                       f"That is {{result}} {small}.", rounded=True, plan=plan)  # fmt: skip
    question = rng.choice([
        "A {big} equals {factor} {small}. What is {amount} {small} in {plural}? Round to 2 decimals.",
        "Using {factor} {small} to the {big}, turn {amount} {small} into {plural} (2 decimals).",
    ]).format(big=big, factor=factor, small=small, amount=amount, plural=plural)  # fmt: skip
    plan = f"Each {big} is {factor} {small}, so divide {amount} by {factor}."
    return Problem(question, f"round({amount} / {factor}, 2)", round_half_up(amount / f),
                   f"That is {{result}} {plural}.", rounded=True, plan=plan)  # fmt: skip


def per_day_and_extras(rng: random.Random) -> Problem:
    days, rate = rng.randint(2, 14), rng.randint(9, 120)
    (e1, t1), (e2, t2) = _money(rng, 2, 60), _money(rng, 2, 60)
    hire = rng.choice([("a kayak", "a dry bag", "a paddle leash"), ("a car", "a child seat", "a roof box"),
                       ("a tent", "a stove", "a lantern"), ("a scooter", "a helmet", "a phone holder")])  # fmt: skip
    question = (f"Hiring {hire[0]} is {rate} euros a day. For {days} days, plus {hire[1]} at {t1} euros and "
                f"{hire[2]} at {t2} euros, what is owed?")  # fmt: skip
    plan = f"Hire: {days} * {rate}. Then add {t1} and {t2}."
    return Problem(question, f"{days} * {rate} + {t1} + {t2}", days * rate + e1 + e2, "That is {result} euros.",
                   plan=plan)  # fmt: skip


def grams_of_a_share(rng: random.Random) -> Problem:
    kg, pct = rng.choice([1, 2, 3, 5]), rng.choice([20, 25, 30, 40, 50, 60])
    part, tp = rng.choice([(Fraction(1, 2), "half"), (Fraction(1, 4), "a quarter"), (Fraction(1, 5), "a fifth"),
                           (Fraction(1, 10), "a tenth")])  # fmt: skip
    mix = rng.choice([("muesli", "fruit", "raisins"), ("soil mix", "compost", "worm castings"),
                      ("spice blend", "pepper", "white pepper")])  # fmt: skip
    question = (f"In a {kg} kg sack of {mix[0]}, {pct}% of the weight is {mix[1]}, and {tp} of the {mix[1]} is "
                f"{mix[2]}. How many grams of {mix[2]} is that?")  # fmt: skip
    plan = f"Grams: {kg} * 1000. {mix[1].capitalize()}: {pct}% of that. {mix[2].capitalize()}: {tp} of those."
    expression = f"{kg} * 1000 * {pct} / 100 * {part.numerator} / {part.denominator}"
    return Problem(question, expression, kg * 1000 * Fraction(pct, 100) * part, "That is {result} grams.", plan=plan)


TEMPLATES = [
    word_quantities, cents_to_dollars, counts_then_price, known_constant, every_n_seconds, job_over_rate,
    clock_span, energy_cost, fuel_per_100km, up_then_down, stated_conversion, per_day_and_extras, grams_of_a_share,
]  # fmt: skip
