"""Word problems composed from parts (``variety: wide``): one structure, many surfaces, and a plan that names every
quantity before the call.

The broad templates give each structure two or three fixed sentences, and a 135M model learns the sentence, not the
structure: on hand-written problems it drops a quantity, merges two prices, or forgets a constant it knows. Here a
problem is assembled: its givens are separate clauses (in any order where order does not matter), each written
several ways (digits or words, thousands separators, dollars, euros or pounds, "each", "apiece", "a jar"), and one of
many questions ends it. The plan lists what each number is ("Bread: 3 * 4.10. Cheese: 7.85.") and then the whole
expression, so the call only copies it. Values are computed here with :class:`~fractions.Fraction`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

from lorastack.finetune.synth import everyday
from lorastack.finetune.synth.arithmetic import PEOPLE, Problem, _money

SMALL_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine",
               10: "ten", 11: "eleven", 12: "twelve"}  # fmt: skip


@dataclass(frozen=True)
class Currency:
    before: str
    after: str

    def __call__(self, text: str) -> str:
        return f"{self.before}{text}{self.after}"


CURRENCIES = [Currency("$", ""), Currency("$", ""), Currency("", " euros"), Currency("£", ""), Currency("", " dollars")]


def _count(rng: random.Random, n: int) -> str:
    """A count as people write it: digits, or a word for small numbers (a third of the time)."""
    if n in SMALL_WORDS and rng.random() < 0.35:
        return SMALL_WORDS[n]
    return everyday._big(n, rng)


def _num(value: Fraction | int, places: int = 2) -> str:
    """A value as the plan and the expression write it: no separators, no trailing zeros after the point."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.{places}f}".rstrip("0").rstrip(".")


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


# --- totals of several items ------------------------------------------------------------------------------------

SHOP = [  # (one, many, unit word for "a ...")
    ("bag of lentils", "bags of lentils", "bag"), ("tub of olives", "tubs of olives", "tub"), ("bag of apples", "bags of apples", "bag"),
    ("notebook", "notebooks", "notebook"), ("bottle of juice", "bottles of juice", "bottle"), ("pen", "pens", "pen"),
    ("pot of yoghurt", "pots of yoghurt", "pot"), ("packet of rice", "packets of rice", "packet"), ("candle", "candles", "candle"),
    ("tin of paint", "tins of paint", "tin"), ("ticket", "tickets", "ticket"), ("sandwich", "sandwiches", "sandwich"),
    ("box of nails", "boxes of nails", "box"), ("roll of tape", "rolls of tape", "roll"), ("plant pot", "plant pots", "pot"),
    ("coffee", "coffees", "cup"), ("muffin", "muffins", "muffin"), ("towel", "towels", "towel"),
]  # fmt: skip
SINGLES = ["a box of matches", "a birthday card", "a bunch of flowers", "a torch", "a doormat", "a watering can",
           "a map", "a phone charger", "a pie dish", "a hat"]  # fmt: skip


def shopping(rng: random.Random) -> Problem:
    cur, who = rng.choice(CURRENCIES), rng.choice(PEOPLE)
    n_multi, n_single = rng.choice([(2, 0), (2, 1), (3, 0), (1, 1), (3, 1), (2, 2), (1, 2)])
    clauses, plan, terms, value = [], [], [], Fraction(0)
    for one, many, unit in rng.sample(SHOP, n_multi):
        q = rng.randint(2, 40)
        price, tp = _money(rng, 0, 25)
        each = rng.choice(["each", "apiece", f"a {unit}", f"per {unit}", "for each one"])
        clauses.append(rng.choice([f"{_count(rng, q)} {many} at {cur(tp)} {each}",
                                   f"{_count(rng, q)} {many} ({cur(tp)} {each})",
                                   f"{_count(rng, q)} {many} costing {cur(tp)} {each}"]))  # fmt: skip
        plan.append(f"{_cap(many)}: {q} * {tp}.")
        terms.append(f"{q} * {tp}")
        value += q * price
    for thing in rng.sample(SINGLES, n_single):
        price, tp = _money(rng, 1, 40)
        clauses.append(rng.choice([f"{thing} for {cur(tp)}", f"{thing} costing {cur(tp)}", f"{thing} at {cur(tp)}"]))
        plan.append(f"{_cap(thing.split(' ', 1)[1])}: {tp}.")
        terms.append(tp)
        value += price
    order = list(range(len(clauses)))
    rng.shuffle(order)
    clauses, plan, terms = [clauses[i] for i in order], [plan[i] for i in order], [terms[i] for i in order]
    listed = ", ".join(clauses[:-1]) + f" and {clauses[-1]}"
    question = rng.choice([
        f"{who} buys {listed}. What is the total?",
        f"At the shop {who} picked up {listed}. How much did {who} pay altogether?",
        f"An order has {listed}. What does the order cost?",
        f"For the party we got {listed}. What did it all come to?",
        f"{who}'s basket holds {listed}. What is the bill at the till?",
        f"What do {listed} cost in total?",
    ])  # fmt: skip
    expression = " + ".join(terms)
    plan.append(f"Total: {expression}.")
    return Problem(question, expression, value, f"The total is {cur('{result}')}.", plan=" ".join(plan))


def change_from(rng: random.Random) -> Problem:
    cur, who = rng.choice(CURRENCIES), rng.choice(PEOPLE)
    (_, many, _), q = rng.choice(SHOP), rng.randint(2, 9)
    price, tp = _money(rng, 1, 9)
    note = rng.choice([n for n in (20, 50, 100) if n > q * price])
    question = rng.choice([
        f"{who} pays for {_count(rng, q)} {many} at {cur(tp)} each with a {cur(str(note))} note. How much change comes back?",
        f"{_count(rng, q).capitalize()} {many} cost {cur(tp)} apiece. What change is there from {cur(str(note))}?",
    ])  # fmt: skip
    plan = f"Cost: {q} * {tp}. Change: {note} minus the cost."
    return Problem(question, f"{note} - {q} * {tp}", note - q * price, f"The change is {cur('{result}')}.", plan=plan)


# --- a fixed charge plus a rate over a count ---------------------------------------------------------------------

PLANS = [  # (what, fixed charge's name, per what, the count's unit (plural))
    ("A climbing wall", "a membership fee", "month", "months"), ("A messaging service", "a line rental", "message", "messages"),
    ("A taxi", "a pick-up charge", "km", "km"), ("A plumber", "a call-out fee", "hour", "hours"),
    ("A car hire firm", "a booking fee", "day", "days"), ("The power company", "a standing charge", "kWh", "kWh"),
    ("A storage unit", "a deposit", "week", "weeks"), ("A language school", "an enrolment fee", "lesson", "lessons"),
    ("A bike rental", "a deposit", "hour", "hours"), ("A printer", "a setup fee", "copy", "copies"),
]  # fmt: skip
LONGER = {"month": [("year", 12), ("years", 12)], "week": [("year", 52)], "day": [("week", 7), ("weeks", 7)],
          "hour": [("day", 24)]}  # fmt: skip


def fee_plus_rate(rng: random.Random) -> Problem:
    cur = rng.choice(CURRENCIES)
    what, fee_name, per, many = rng.choice(PLANS)
    fee, tf = _money(rng, 5, 150)
    if per in ("message", "copy", "kWh"):
        rate = Fraction(rng.randint(3, 45), 100)
        tr = _num(rate)
    else:
        rate, tr = _money(rng, 1, 5 if per == "km" else 60)
    n = rng.randint(2, 400) if per in ("message", "copy", "kWh", "km") else rng.randint(2, 24)
    count_text, count_expr, plan_count = f"{_count(rng, n)} {many}", str(n), ""
    if per in LONGER and rng.random() < 0.35:
        span, factor = rng.choice(LONGER[per])
        k = rng.randint(2, 4) if span.endswith("s") else 1
        count_text = f"{k} {span}" if k > 1 else f"a {span}"
        count_expr, n = (f"{k} * {factor}" if k > 1 else str(factor)), k * factor
        plan_count = f"{_cap(many)}: {count_expr}. "
    givens = [f"{what} charges {fee_name} of {cur(tf)}", f"then {cur(tr)} per {per}"]
    if rng.random() < 0.5:
        givens = [f"{what} charges {cur(tr)} per {per}", f"plus {fee_name} of {cur(tf)}"]
    question = rng.choice([
        f"{givens[0]}, {givens[1]}. What is the total for {count_text}?",
        f"{givens[0]}, {givens[1]}. How much is paid over {count_text}, {fee_name.split(' ', 1)[1]} included?",
        f"{givens[0]}, {givens[1]}. What does {count_text} cost altogether?",
    ])  # fmt: skip
    plan = f"{plan_count}Rate part: {count_expr} * {tr}. Add {fee_name.split(' ', 1)[1]} {tf}."
    expression = f"{tf} + {count_expr} * {tr}"
    return Problem(question, expression, fee + n * rate, f"The total is {cur('{result}')}.", plan=plan)


# --- a group, each member with the same kit ----------------------------------------------------------------------

GROUPS = [("pupils", "pupil"), ("campers", "camper"), ("guests", "guest"), ("players", "player"),
          ("volunteers", "volunteer"), ("runners", "runner")]  # fmt: skip
KIT = [("workbooks", "workbook"), ("pencils", "pencil"), ("water bottles", "water bottle"),
       ("name badges", "name badge"), ("snack bars", "snack bar"), ("tickets", "ticket"), ("T-shirts", "T-shirt")]  # fmt: skip


def group_kit(rng: random.Random) -> Problem:
    cur = rng.choice(CURRENCIES)
    (group, member), n = rng.choice(GROUPS), rng.randint(4, 60)
    (many, _), (_, one2) = rng.sample(KIT, 2)
    a = rng.randint(2, 6)
    (p, tp), (q, tq) = _money(rng, 0, 12), _money(rng, 0, 20)
    question = rng.choice([
        f"There are {n} {group}. Every {member} receives {_count(rng, a)} {many} priced {cur(tp)} apiece plus a single {one2} priced {cur(tq)}. What does it cost for all of them?",
        f"Every {member} needs {_count(rng, a)} {many} ({cur(tp)} apiece) and a {one2} ({cur(tq)}). How much for {n} {group}?",
        f"A club buys, for each of its {n} {group}, {_count(rng, a)} {many} costing {cur(tp)} each plus one {one2} costing {cur(tq)}. What is the total?",
    ])  # fmt: skip
    plan = f"One {member}: {a} * {tp} + {tq}. All {n}: times {n}."
    return Problem(question, f"{n} * ({a} * {tp} + {tq})", n * (a * p + q), f"It costs {cur('{result}')}.", plan=plan)


def each_holding(rng: random.Random) -> Problem:
    n = rng.randint(3, 80)
    (empty, te), (load, tl) = _money(rng, 1, 30), _money(rng, 2, 60)
    box, stuff = rng.choice([("drum", "potatoes"), ("barrel", "oil"), ("sack", "grain"), ("box", "books"),
                             ("basket", "pears")])  # fmt: skip
    question = rng.choice([
        f"{n} {box}s of {stuff} go on a truck: each has {tl} kg of {stuff} inside and the {box} itself is {te} kg. Total mass in kg?",
        f"What is the total mass, in kg, of {n} {box}s if a {box} weighs {te} kg bare and carries {tl} kg of {stuff}?",
    ])  # fmt: skip
    plan = f"One full {box}: {te} + {tl} kg. All {n}: times {n}."
    return Problem(question, f"{n} * ({te} + {tl})", n * (empty + load), "That is {result} kg.", plan=plan)


# --- a rate over a span the reader converts ------------------------------------------------------------------------

SPANS = {  # span -> (hours in it as an expression, its value)
    "day": ("24", 24), "week": ("7 * 24", 168), "fortnight": ("14 * 24", 336), "30-day month": ("30 * 24", 720),
}  # fmt: skip
RATE_THINGS = [("A cracked pipe loses", "litres"), ("A pump moves", "litres"), ("A factory line makes", "parts"),
               ("A server handles", "requests"), ("A heater burns", "kg of pellets"), ("A fountain recycles", "litres")]  # fmt: skip


def per_hour_over_span(rng: random.Random) -> Problem:
    thing, unit = rng.choice(RATE_THINGS)
    rate = Fraction(rng.randint(1, 400), rng.choice([1, 10, 100]))
    tr = _num(rate)
    style = rng.randrange(3)
    if style == 0:
        span = rng.choice(list(SPANS))
        k = rng.randint(1, 5) if span in ("day", "week") else 1
        hours_expr, hours = SPANS[span]
        span_text = f"{_count(rng, k)} {span}s" if k > 1 else f"a {span}" if span != "30-day month" else "a 30-day month"
        expr_hours = hours_expr if k == 1 else f"{k} * {hours_expr}"
        question = rng.choice([f"{thing} {tr} {unit} an hour. How many {unit} is that in {span_text}?",
                               f"{thing} {tr} {unit} every hour, day and night. What total over {span_text}?"])  # fmt: skip
        plan = f"Hours: {expr_hours}. Total: {tr} {unit} times the hours."
        return Problem(question, f"{tr} * {expr_hours}", rate * hours * k, f"That is {{result}} {unit}.", plan=plan)
    if style == 1:
        question = rng.choice([f"{thing} {tr} {unit} per second. How many {unit} is that per hour?",
                               f"{thing} {tr} {unit} each second. What does that make in one hour?"])  # fmt: skip
        plan = "Seconds in an hour: 60 * 60. Total: the rate times that."
        return Problem(question, f"{tr} * 60 * 60", rate * 3600, f"That is {{result}} {unit}.", plan=plan)
    h = rng.randint(2, 12)
    question = rng.choice([f"{thing} {tr} {unit} a minute. What is the total after {_count(rng, h)} hours?",
                           f"In {h} hours, how many {unit} does it make if it runs at {tr} {unit} per minute?"])  # fmt: skip
    plan = f"Minutes: {h} * 60. Total: {tr} times the minutes."
    return Problem(question, f"{tr} * {h} * 60", rate * h * 60, f"That is {{result}} {unit}.", plan=plan)


def travel_time(rng: random.Random) -> Problem:
    speed = rng.choice([40, 48, 50, 60, 72, 75, 80, 90, 96, 100, 110, 120, 150, 180, 240, 300])
    minutes = rng.choice([15, 20, 30, 40, 45, 50, 75, 80, 90, 100, 105, 120, 135, 150, 200])
    distance = Fraction(speed * minutes, 60)
    if distance.denominator != 1:
        distance = Fraction(speed * 2)
    td = _num(distance)
    vehicle = rng.choice(["A train", "A coach", "A ferry", "A plane", "A delivery van", "A tram"])
    question = rng.choice([
        f"{vehicle} covers {td} km at a steady {speed} km/h. Find the travel time in minutes.",
        f"How long, in minutes, is a {td} km trip for {vehicle.lower()} going {speed} km per hour?",
        f"{vehicle} runs at {speed} km an hour. The route is {td} km. What is the journey time in minutes?",
    ])  # fmt: skip
    plan = f"Hours: {td} / {speed}. Minutes: hours times 60."
    return Problem(question, f"{td} / {speed} * 60", distance / speed * 60, "It takes {result} minutes.", plan=plan)


def speed_from_minutes(rng: random.Random) -> Problem:
    km = Fraction(rng.randint(2, 400), rng.choice([1, 10]))
    minutes = rng.choice([12, 15, 20, 24, 30, 36, 40, 45, 48, 50, 75, 90, 100, 150])
    who = rng.choice(PEOPLE)
    question = rng.choice([
        f"{who} rides {_num(km)} km in {minutes} minutes. What is the average speed in km/h?",
        f"A {_num(km)} km leg took {minutes} minutes. How fast was that, in km per hour?",
    ])  # fmt: skip
    plan = f"Hours: {minutes} / 60. Speed: {_num(km)} divided by the hours."
    return Problem(question, f"{_num(km)} / ({minutes} / 60)", km / Fraction(minutes, 60),
                   "The speed is {result} km/h.", plan=plan)  # fmt: skip


# --- percentages in a row -----------------------------------------------------------------------------------------

RISE = ["rises by", "goes up by", "increases by", "grows by", "climbs"]
FALL = ["falls by", "drops by", "decreases by", "shrinks by", "goes down by"]
SUBJECTS = [("A rent of", "a month"), ("A price of", ""), ("A salary of", "a month"), ("A town's population of", ""),
            ("Sales of", "units"), ("A share price of", ""), ("A herd of", "cattle"), ("A budget of", "")]  # fmt: skip


def two_changes(rng: random.Random) -> Problem:
    subject, tail = rng.choice(SUBJECTS)
    start = rng.choice([rng.randint(40, 900), rng.randint(1000, 90000)])
    a, b = rng.choice([2, 3, 4, 5, 8, 10, 12, 15, 20, 25, 30]), rng.choice([2, 3, 4, 5, 6, 10, 15, 20, 25])
    up_a, up_b = rng.random() < 0.5, rng.random() < 0.5
    verb_a, verb_b = rng.choice(RISE if up_a else FALL), rng.choice(RISE if up_b else FALL)
    then = rng.choice(["and then", "then the next month", "and after that", "before it"])
    question = (f"{subject} {_count(rng, start)}{' ' + tail if tail else ''} {verb_a} {a}%, {then} {verb_b} {b}%. "
                f"{rng.choice(['What is it now?', 'What is the new figure?', 'Where does it end up?'])}")  # fmt: skip
    fa = f"(100 {'+' if up_a else '-'} {a}) / 100"
    fb = f"(100 {'+' if up_b else '-'} {b}) / 100"
    plan = (f"{'Up' if up_a else 'Down'} {a}%: times {fa}. {'Up' if up_b else 'Down'} {b}%: times {fb}.")
    value = start * Fraction(100 + (a if up_a else -a), 100) * Fraction(100 + (b if up_b else -b), 100)
    return Problem(question, f"{start} * {fa} * {fb}", value, "It is now {result}.", plan=plan)


def rest_after_percent(rng: random.Random) -> Problem:
    style = rng.randrange(3)
    pct = rng.choice([5, 10, 15, 20, 25, 30, 35, 40, 45, 60, 65, 70, 80, 85, 90])
    if style == 0:
        cap = rng.choice([rng.randint(50, 900), rng.randint(1000, 60000)])
        box, unit = rng.choice([("A rain barrel takes", "litres"), ("A car park has room for", "cars"),
                                ("A hall seats", "people"), ("A hard drive stores", "GB"), ("A barn stores", "bales")])  # fmt: skip
        question = rng.choice([
            f"{box} {_count(rng, cap)} {unit}, and it is {pct}% full right now. What room remains, in {unit}?",
            f"{box} {_count(rng, cap)} {unit}; {pct}% of it is taken. How much room is left, in {unit}?",
        ])  # fmt: skip
        plan = f"Taken: {pct}% of {cap}. Left: {cap} minus that."
        return Problem(question, f"{cap} - {cap} * {pct} / 100", cap - Fraction(cap * pct, 100),
                       f"{{result}} {unit} are left.", plan=plan)  # fmt: skip
    cur = rng.choice(CURRENCIES)
    amount, ta = _money(rng, 100, 9000)
    k = rng.randint(2, 8)
    cut = rng.choice(["tax", "fees", "the agent's commission", "costs"])
    question = rng.choice([
        f"A {cur(ta)} win loses {pct}% to {cut}, and what remains goes to {_count(rng, k)} friends in equal parts. What is each friend's share?",
        f"{rng.choice(PEOPLE)} earns {cur(ta)}, pays {pct}% in {cut}, and divides the rest equally among {k} savings jars. How much goes in each jar?",
    ])  # fmt: skip
    plan = f"Kept: {ta} * (100 - {pct}) / 100. Each: that divided by {k}."
    return Problem(question, f"{ta} * (100 - {pct}) / 100 / {k}", amount * (100 - pct) / 100 / k,
                   f"Each gets {cur('{result}')}.", plan=plan)  # fmt: skip


FRACTIONS = [(Fraction(1, 2), "half"), (Fraction(1, 4), "a quarter"), (Fraction(1, 3), "a third"),
             (Fraction(1, 5), "a fifth"), (Fraction(3, 4), "three quarters"), (Fraction(1, 10), "a tenth")]  # fmt: skip


def share_of_share(rng: random.Random) -> Problem:
    kg = rng.choice([1, 2, 3, 4, 5, 10])
    pct = rng.choice([10, 20, 25, 30, 40, 50, 60, 80])
    part, tpart = rng.choice(FRACTIONS)
    whole, mid, end = rng.choice([("cake mix", "sugar", "brown sugar"), ("bird seed", "sunflower seed", "black seed"),
                                  ("salad", "leaves", "spinach"), ("cereal", "oats", "rolled oats")])  # fmt: skip
    question = rng.choice([
        f"A {kg} kg tub of {whole} is {pct}% {mid}, and {tpart} of the {mid} is {end}. How many grams of {end} is that?",
        f"{_cap(tpart)} of the {mid} in a {kg} kg bag of {whole} is {end}; {mid} makes up {pct}% of the bag. Grams of {end}?",
    ])  # fmt: skip
    plan = f"Grams: {kg} * 1000. {_cap(mid)}: times {pct} / 100. {_cap(end)}: times {part.numerator} / {part.denominator}."
    expression = f"{kg} * 1000 * {pct} / 100 * {part.numerator} / {part.denominator}"
    return Problem(question, expression, kg * 1000 * Fraction(pct, 100) * part, "That is {result} grams.", plan=plan)


# --- divide, then add or take away; multiples of an age ----------------------------------------------------------


def split_then_adjust(rng: random.Random) -> Problem:
    total = rng.choice([300, 400, 500, 600, 750, 900, 1000, 1200, 1500, 2000])
    k = rng.choice([d for d in (2, 3, 4, 5, 6, 8, 10, 12) if total % d == 0])
    extra = rng.choice([10, 15, 20, 25, 40, 50, 60, 75, 100])
    add = rng.random() < 0.6
    thing = rng.choice([("ml of lemonade", "cups", "ml"), ("g of dough", "rolls", "g"), ("cm of ribbon", "pieces", "cm"),
                        ("ml of soup", "bowls", "ml")])  # fmt: skip
    if add:
        question = rng.choice([
            f"{total} {thing[0]} is divided evenly into {_count(rng, k)} {thing[1]}, then {extra} {thing[2]} more is added to each. How much is in each?",
            f"Split {total} {thing[0]} equally between {k} {thing[1]} and add {extra} {thing[2]} to every one. What does each hold?",
        ])  # fmt: skip
        plan = f"Each: {total} / {k}. Then add {extra}."
        return Problem(question, f"{total} / {k} + {extra}", Fraction(total, k) + extra, f"Each has {{result}} {thing[2]}.",
                       plan=plan)  # fmt: skip
    question = f"{total} {thing[0]} is shared equally by {_count(rng, k)} {thing[1]}, and {extra} {thing[2]} is taken from each. How much is left in each?"
    plan = f"Each: {total} / {k}. Then take away {extra}."
    return Problem(question, f"{total} / {k} - {extra}", Fraction(total, k) - extra, f"Each has {{result}} {thing[2]}.",
                   plan=plan)  # fmt: skip


def age_multiple(rng: random.Random) -> Problem:
    who, kid = rng.sample(PEOPLE, 2)
    k, n, m = rng.randint(2, 6), rng.randint(3, 15), rng.randint(1, 20)
    times = {2: "twice", 3: "three times", 4: "four times", 5: "five times", 6: "six times"}[k]
    future = rng.random() < 0.6
    question = rng.choice([
        f"{who}'s age is {times} {kid}'s, and {kid} is {n} now. In {m} years, what age is {who}?" if future else
        f"{who}'s age is {times} {kid}'s, and {kid} is {n} now. What age was {who} {m} years earlier?",
        f"{kid} is {n}. {who}'s age is {k} times that. What age will {who} be {m} years from now?" if future else
        f"{kid} is {n}. {who}'s age is {k} times that. What was {who}'s age {m} years back?",
    ])  # fmt: skip
    sign = "+" if future else "-"
    plan = f"{who} now: {k} * {n}. Then {'add' if future else 'take away'} {m}."
    return Problem(question, f"{k} * {n} {sign} {m}", Fraction(k * n + (m if future else -m)),
                   f"{who} will be {{result}}." if future else f"{who} was {{result}}.", plan=plan)  # fmt: skip


def weekly_sales(rng: random.Random) -> Problem:
    cur = rng.choice(CURRENCIES)
    per_day, days = rng.randint(20, 900), rng.choice([5, 6, 7])
    price, tp = _money(rng, 0, 15)
    what = rng.choice(["loaves", "coffees", "newspapers", "pies", "tickets", "ice creams"])
    days_text = {5: rng.choice(["5 days a week", "on weekdays only", "Monday to Friday"]),
                 6: rng.choice(["6 days a week", "every day except Sunday"]),
                 7: rng.choice(["every day", "7 days a week", "all week"])}[days]  # fmt: skip
    question = rng.choice([
        f"{what.capitalize()} go for {cur(tp)} apiece, and a kiosk moves {per_day} of them daily, {days_text}. What are the weekly takings?",
        f"At {cur(tp)} apiece, how much does a shop earn in a week selling {per_day} {what} per day {days_text}?",
    ])  # fmt: skip
    plan = f"Days: {days}. Weekly: {per_day} * {days} * {tp}."
    return Problem(question, f"{per_day} * {days} * {tp}", per_day * days * price,
                   f"It takes {cur('{result}')} a week.", plan=plan)  # fmt: skip


# --- unit conversions, the factor known or given ------------------------------------------------------------------

KNOWN = [  # (from, to, expression suffix, factor as Fraction, the plan's fact)
    ("km", "metres", "* 1000", Fraction(1000), "1 km = 1000 m"), ("metres", "km", "/ 1000", Fraction(1, 1000), "1 km = 1000 m"),
    ("metres", "cm", "* 100", Fraction(100), "1 m = 100 cm"), ("cm", "metres", "/ 100", Fraction(1, 100), "1 m = 100 cm"),
    ("kg", "grams", "* 1000", Fraction(1000), "1 kg = 1000 g"), ("grams", "kg", "/ 1000", Fraction(1, 1000), "1 kg = 1000 g"),
    ("litres", "ml", "* 1000", Fraction(1000), "1 litre = 1000 ml"), ("ml", "litres", "/ 1000", Fraction(1, 1000), "1 litre = 1000 ml"),
    ("hours", "minutes", "* 60", Fraction(60), "1 hour = 60 minutes"), ("minutes", "hours", "/ 60", Fraction(1, 60), "1 hour = 60 minutes"),
    ("days", "hours", "* 24", Fraction(24), "1 day = 24 hours"), ("weeks", "days", "* 7", Fraction(7), "1 week = 7 days"),
    ("m/s", "km/h", "* 3600 / 1000", Fraction(18, 5), "1 m/s = 3600 m per hour = 3.6 km/h"),
    ("km/h", "m/s", "* 1000 / 3600", Fraction(5, 18), "1 km/h = 1000 m per 3600 s"),
    ("ml per second", "litres per hour", "* 3600 / 1000", Fraction(18, 5), "3600 seconds an hour, 1000 ml a litre"),
]  # fmt: skip
GIVEN = [  # (big unit, small unit, small per big as text), for a two-step conversion with a given factor
    ("mile", "km", "1.609"), ("pound", "grams", "453.6"), ("foot", "cm", "30.48"), ("tablespoon", "ml", "15"),
    ("gallon", "litres", "3.785"), ("chain", "metres", "20.12"),
]  # fmt: skip
THEN = {"cm": ("metres", "/ 100", Fraction(1, 100)), "ml": ("litres", "/ 1000", Fraction(1, 1000)),
        "km": ("metres", "* 1000", Fraction(1000)), "grams": ("kg", "/ 1000", Fraction(1, 1000)),
        "litres": ("ml", "* 1000", Fraction(1000)), "metres": ("km", "/ 1000", Fraction(1, 1000))}  # fmt: skip


def known_conversion(rng: random.Random) -> Problem:
    src, dst, suffix, factor, fact = rng.choice(KNOWN)
    amount = Fraction(rng.randint(1, 9000), rng.choice([1, 1, 10, 100, 1000]))
    ta = _num(amount, 3)
    question = rng.choice([
        f"How many {dst} is {ta} {src}?", f"Convert {ta} {src} into {dst}.", f"What is {ta} {src} in {dst}?",
        f"A reading of {ta} {src}: how much is that in {dst}?", f"Express {ta} {src} as {dst}.",
    ])  # fmt: skip
    plan = f"{fact}. So {ta} {suffix}."
    return Problem(question, f"{ta} {suffix}", amount * factor, f"That is {{result}} {dst}.", plan=plan)


def given_then_known(rng: random.Random) -> Problem:
    big, small, factor = rng.choice(GIVEN)
    amount = rng.randint(2, 300)
    plural = {"inch": "inches", "foot": "feet"}.get(big, big + "s")
    f = Fraction(factor)
    if small in THEN and rng.random() < 0.7:
        final, suffix, extra = THEN[small]
        question = rng.choice([
            f"Take 1 {big} as {factor} {small}. What do {amount} {plural} come to in {final}?",
            f"With {factor} {small} to each {big}, what is {amount} {plural} in {final}?",
            f"Using 1 {big} = {factor} {small}, turn {amount} {plural} into {final}.",
        ])  # fmt: skip
        plan = f"In {small}: {amount} * {factor}. Then to {final}: {suffix}."
        return Problem(question, f"{amount} * {factor} {suffix}", amount * f * extra, f"That is {{result}} {final}.",
                       plan=plan)  # fmt: skip
    cur = rng.choice(CURRENCIES)
    price, tp = _money(rng, 1, 40)
    question = rng.choice([
        f"Something sold at {cur(tp)} per {big} costs how much per {small.rstrip('s')}? A {big} equals {factor} {small}.",
        f"A {big} equals {factor} {small}. If a {big} costs {cur(tp)}, what is the price of one {small.rstrip('s')}?",
    ])  # fmt: skip
    plan = f"Price per {small.rstrip('s')}: {tp} divided by {factor}."
    return Problem(question, f"{tp} / {factor}", price / f, f"That is {cur('{result}')}.", plan=plan)


TEMPLATES = [
    shopping, shopping, change_from, fee_plus_rate, fee_plus_rate, group_kit, each_holding, per_hour_over_span,
    travel_time, speed_from_minutes, two_changes, two_changes, rest_after_percent, share_of_share, split_then_adjust,
    age_multiple, weekly_sales, known_conversion, known_conversion, given_then_known,
]  # fmt: skip
