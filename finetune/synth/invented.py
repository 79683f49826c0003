"""Client functions invented per row from parts (``variety: wide``): any name, any mix of parameters, natural requests.

:mod:`functions` has a fixed list of functions, each requested one way ("opening + phrases"); the broad adapter
then left out arguments a request gave in other words ("in fahrenheit", "a high priority ...", "for 3 passengers"),
most of them optional. Here a function is assembled from a verb, a noun and one to four parameter kinds (a place,
a date, a head count, a unit, a priority, a language, a flag, a list ...), each kind with several parameter names
and several ways a person states its value, before the noun ("a high priority note") or after it ("for 3 people").
Optional parameters come with defaults; a request states each optional one half the time, and the call has
exactly the stated ones. None of the eval set's functions (agent/evalsets/functions.jsonl) can be formed here.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Callable

from lorastack.finetune.synth.facts import FIRST_NAMES
from lorastack.finetune.synth.functions import NO_FIT, _phrase

TOWNS = ["Oslo", "Nairobi", "Quito", "Hanoi", "Perth", "Tunis", "Leeds", "Porto", "Seoul", "Calgary", "Krakow", "Cusco",
         "Bergen", "Accra", "Dakar", "Malmo", "Split", "Gdansk", "Cork", "Izmir"]  # fmt: skip
LANGUAGES = ["French", "Italian", "Dutch", "Polish", "Swedish", "Turkish", "Korean", "Greek", "Portuguese", "Hindi"]
THINGS = ["the blue folder", "spare keys", "a birthday cake", "the quarterly report", "new tyres", "the garden hose",
          "two chairs", "the old laptop", "a box of tiles", "the choir music"]  # fmt: skip
NOTES = ["call the dentist", "buy more coffee", "send the invoice", "pick up the dry cleaning", "water the ferns",
         "book the vet", "return the library books", "back up the photos"]  # fmt: skip
DAYS = [f"2027-{m:02d}-{d:02d}" for m in range(1, 13) for d in (2, 8, 13, 19, 24, 28)]


def _date(r: random.Random) -> str:
    return r.choice(DAYS)


def _clock(r: random.Random) -> str:
    return f"{r.randint(6, 22):02d}:{r.choice([0, 10, 15, 20, 30, 40, 45]):02d}"


def _email(r: random.Random) -> str:
    return f"{r.choice(FIRST_NAMES).lower()}@{r.choice(['mail.test', 'office.test', 'team.test'])}"


@dataclass(frozen=True)
class Kind:
    """A kind of parameter: its possible names, its schema, a value, and how a request says it."""

    names: tuple[str, ...]
    schema: Callable[[random.Random], dict[str, Any]]
    pick: Callable[[random.Random, dict[str, Any]], Any]
    after: tuple[str, ...]
    """Phrases after the noun, with {v}."""
    before: tuple[str, ...] = ()
    """Phrases before the noun ("a {v} priority note"), with {v}."""
    optional: bool = True
    last: bool = False
    """A free text that ends the request (": see you at noon")."""


def _enum(values: list[str], desc: str) -> Callable[[random.Random], dict[str, Any]]:
    def make(r: random.Random) -> dict[str, Any]:
        return {"type": "string", "enum": values, "description": desc, "default": values[0]}

    return make


def _typed(kind: str, desc: str, default: Any = None) -> Callable[[random.Random], dict[str, Any]]:
    def make(r: random.Random) -> dict[str, Any]:
        schema = {"type": kind, "description": desc}
        return {**schema, "default": default} if default is not None else schema

    return make


def _not_default(r: random.Random, schema: dict[str, Any]) -> Any:
    return r.choice(schema["enum"][1:])


KINDS = [
    Kind(("city", "location", "town"), _typed("string", "City"), lambda r, s: r.choice(TOWNS),
         ("in {v}", "for {v}"), ("{v}",), optional=False),
    Kind(("date", "day", "on_date"), _typed("string", "Date as YYYY-MM-DD"), lambda r, s: _date(r), ("on {v}", "for {v}")),
    Kind(("time", "start_time", "at"), _typed("string", "Time as HH:MM"), lambda r, s: _clock(r), ("at {v}", "starting at {v}")),
    Kind(("guests", "people", "party", "headcount"), _typed("integer", "Number of people", 2), lambda r, s: r.randint(3, 12),
         ("for {v} people", "for a group of {v}", "with {v} guests"), ("{v}-person",)),
    Kind(("seats", "passengers", "travellers"), _typed("integer", "How many seats", 1), lambda r, s: r.randint(2, 9),
         ("for {v} passengers", "with {v} seats", "for {v} of us"), ("{v}-seat",)),
    Kind(("units", "scale"), _enum(["metric", "imperial"], "Unit system"), _not_default, ("in {v} units", "using {v} units"), ("{v}",)),
    Kind(("temp_unit", "degrees_in"), _enum(["celsius", "kelvin", "fahrenheit"], "Temperature scale"), _not_default,
         ("in {v}", "in degrees {v}"), ("{v}",)),
    Kind(("priority", "importance", "urgency"), _enum(["normal", "low", "high", "urgent"], "Priority"), _not_default,
         ("with {v} priority", "marked {v}"), ("{v} priority", "{v}-priority")),
    Kind(("language", "lang", "target_lang"), _typed("string", "Language name"), lambda r, s: r.choice(LANGUAGES),
         ("in {v}", "into {v}", "written in {v}"), ("{v}",)),
    Kind(("room", "area", "space"), _enum(["lounge", "kitchen", "study", "hallway", "attic", "garage"], "Room"),
         lambda r, s: r.choice(s["enum"]), ("in the {v}", "for the {v}"), ("{v}",), optional=False),
    Kind(("size", "tier"), _enum(["medium", "small", "large", "extra large"], "Size"), _not_default, ("in {v} size", "size {v}"),
         ("{v}",)),
    Kind(("colour", "color", "finish"), _enum(["white", "black", "green", "red", "grey"], "Colour"), _not_default,
         ("in {v}", "coloured {v}"), ("{v}",)),
    Kind(("recipient", "to_address", "email"), _typed("string", "Email address"), lambda r, s: _email(r), ("to {v}", "for {v}"),
         optional=False),
    Kind(("invitees", "participants", "emails"), lambda r: {"type": "array", "items": {"type": "string"}, "description": "Email addresses"},
         lambda r, s: [_email(r) for _ in range(r.randint(2, 3))], ("with {v}", "inviting {v}"), optional=False),
    Kind(("note", "message", "text", "content"), _typed("string", "The text"), lambda r, s: r.choice(NOTES),
         (": {v}", "saying '{v}'", "that says {v}"), optional=False, last=True),
    Kind(("item", "what", "goods"), _typed("string", "What it is about"), lambda r, s: r.choice(THINGS), ("for {v}", "of {v}"),
         optional=False),
    Kind(("minutes", "length_min", "duration"), _typed("integer", "Length in minutes", 30), lambda r, s: r.choice([15, 20, 45, 60, 90]),
         ("for {v} minutes", "lasting {v} minutes"), ("{v}-minute", "{v} minute")),
    Kind(("nights", "stay_nights"), _typed("integer", "Nights", 1), lambda r, s: r.randint(2, 14), ("for {v} nights",), ("{v}-night",)),
    Kind(("level", "percent", "intensity"), _typed("integer", "Level 0-100", 50), lambda r, s: r.choice([10, 25, 35, 70, 80, 95]),
         ("to {v} percent", "at {v}%"), ()),
    Kind(("degrees", "target_temp"), _typed("number", "Temperature in degrees", 20), lambda r, s: r.choice([16.5, 18, 19.5, 21, 22.5, 24]),
         ("to {v} degrees", "at {v} degrees"), ()),
    Kind(("amount", "sum", "value"), _typed("number", "Amount of money"), lambda r, s: r.randint(500, 90000) / 100, ("of {v}", "for {v}"),
         optional=False),
    Kind(("source_currency", "from_code"), _typed("string", "Currency code to take"), lambda r, s: r.choice(["SEK", "NOK", "PLN", "TRY"]),
         ("from {v}",), optional=False),
    Kind(("target_currency", "to_code"), _typed("string", "Currency code to give"), lambda r, s: r.choice(["CHF", "DKK", "CZK", "HUF"]),
         ("to {v}", "into {v}"), optional=False),
    Kind(("reference", "ref_code", "booking_ref"), _typed("string", "Reference code"),
         lambda r, s: f"{r.choice('ABKQXZ')}{r.randint(10000, 99999)}", ("with reference {v}", "number {v}"), optional=False),
]  # fmt: skip
FLAGS = [  # (names, phrase when true, description)
    (("gift_wrap", "wrap_as_gift"), "as a gift", "Gift-wrap it"), (("notify", "send_alert"), "and notify me", "Send a notification"),
    (("refundable", "flexible"), "that is refundable", "Refundable"), (("vegetarian", "veggie"), "with the vegetarian option", "Vegetarian"),
    (("repeat", "recurring"), "every week", "Repeat weekly"), (("loop", "on_repeat"), "on repeat", "Play on repeat"),
    (("quiet", "silent"), "quietly", "No sound"), (("insured", "insurance"), "with insurance", "Add insurance"),
]  # fmt: skip
NOUNS = [  # (verb, noun, reply)
    ("book", "cooking class", "The class is booked."), ("reserve", "meeting room", "The room is reserved."),
    ("order", "cake", "The cake is ordered."), ("schedule", "repair visit", "The visit is scheduled."),
    ("create", "note", "The note is saved."), ("plan", "walking tour", "The tour is planned."),
    ("book", "boat trip", "The trip is booked."), ("arrange", "pickup", "The pickup is arranged."),
    ("start", "cleaning robot", "The robot is running."), ("set up", "video call", "The call is set up."),
    ("get", "pollen report", "Here is the report."), ("order", "paint sample", "The sample is ordered."),
    ("log", "water reading", "The reading is logged."), ("post", "status update", "The update is posted."),
    ("hire", "moving van", "The van is hired."), ("book", "cabin", "The cabin is booked."),
    ("request", "quote", "The quote is requested."), ("open", "support ticket", "The ticket is open."),
    ("pay", "bill", "The bill is paid."), ("exchange", "cash", "The exchange is done."),
]  # fmt: skip
OPENINGS = ["{Verb} a {noun}", "Please {verb} a {noun}", "Can you {verb} a {noun}", "I'd like to {verb} a {noun}",
            "I need you to {verb} a {noun}", "Could you {verb} me a {noun}"]  # fmt: skip


def _name(r: random.Random, verb: str, noun: str) -> str:
    words = verb.split() + noun.split()
    style = r.randrange(3)
    if style == 0:
        return "_".join(words)
    if style == 1:
        return words[0] + "".join(w.title() for w in words[1:])
    return "_".join(words[1:] + words[:1])


def invent(r: random.Random) -> tuple[dict[str, Any], list[tuple[str, Kind | None, dict[str, Any]]], str, str, str]:
    """One function: (its schema, its parameters as (name, kind or None for a flag, schema), verb, noun, reply)."""
    verb, noun, reply = r.choice(NOUNS)
    kinds = r.sample(KINDS, r.randint(1, 3))
    params: list[tuple[str, Kind | None, dict[str, Any]]] = [(r.choice(k.names), k, k.schema(r)) for k in kinds]
    if r.random() < 0.35:
        names, _, desc = r.choice(FLAGS)
        params.append((r.choice(names), None, {"type": "boolean", "description": desc, "default": False}))
    if len({p[0] for p in params}) < len(params):
        return invent(r)
    params.sort(key=lambda p: p[1] is None or p[1].optional)  # required ones first
    properties = {name: schema for name, _, schema in params}
    required = [name for name, kind, _ in params if kind is not None and not kind.optional]
    if not required:
        required = [params[0][0]]
    function = {"name": _name(r, verb, noun), "description": f"{verb.capitalize()} a {noun}.",
                "parameters": {"type": "object", "properties": properties, "required": required}}  # fmt: skip
    return {"type": "function", "function": function}, params, verb, noun, reply


def row(r: random.Random, fits: bool) -> dict[str, Any]:
    """One conversation, as :func:`functions.row` writes it, with invented functions."""
    made = [invent(r) for _ in range(r.randint(2, 4))]
    if len({m[0]["function"]["name"] for m in made}) < len(made):
        return row(r, fits)
    tools = [m[0] for m in made]
    if not fits:
        question, reply = r.choice(NO_FIT)
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": reply}],
                "tools": tools}  # fmt: skip
    schema, params, verb, noun, reply = made[0]
    r.shuffle(tools)
    required = schema["function"]["parameters"]["required"]
    arguments: dict[str, Any] = {}
    before, after, last = [], [], []
    for name, kind, pschema in params:
        if name not in required and r.random() < 0.5:
            continue
        if kind is None:  # a flag, stated only when true
            arguments[name] = True
            after.append(next(f[1] for f in FLAGS if name in f[0]))
            continue
        value = kind.pick(r, pschema)
        arguments[name] = value
        text = _phrase(value)
        if kind.last:
            last.append(r.choice(kind.after).format(v=text))
        elif kind.before and not before and r.random() < 0.4:
            before.append(r.choice(kind.before).format(v=text))
        else:
            after.append(r.choice(kind.after).format(v=text))
    r.shuffle(after)
    opening = r.choice(OPENINGS)
    described = f"{' '.join(before)} {noun}" if before else noun
    article = "an" if described[0] in "aeiou" else "a"
    head = opening.replace("a {noun}", f"{article} {{noun}}").format(Verb=verb.capitalize(), verb=verb, noun=described)
    tail = "".join(t if t.startswith(":") else f" {t}" for t in last)
    question = " ".join([head, *after]) + tail + r.choice([".", "?", ", please.", ""])
    result = json.dumps({"status": "ok"})
    call = {"id": "call_0", "type": "function", "function": {"name": schema["function"]["name"],
                                                             "arguments": json.dumps(arguments)}}  # fmt: skip
    return {"messages": [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_0", "content": result},
        {"role": "assistant", "content": reply},
    ], "tools": tools}  # fmt: skip
