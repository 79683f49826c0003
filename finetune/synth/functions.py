"""General function calling (``function_share``): a client program's own functions, invented per row.

Each row offers two to four synthetic functions (varied names, descriptions and parameters: strings, numbers,
integers, booleans, enums, arrays, optional ones with defaults) and a request that one of them answers, with the
exact call, a made-up result and a short reply; or a request none of them fits, answered in plain text with no
call. There is no system prompt, as when a program sends its own messages; the template then adds its default.
None of the eval set's functions (agent/evalsets/functions.jsonl) is among these.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from lorastack.finetune.synth.facts import FIRST_NAMES

CITIES = ["Oslo", "Nairobi", "Quito", "Hanoi", "Perth", "Tunis", "Leeds", "Porto", "Seoul", "Calgary", "Krakow"]
CODES = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "INR"]
WORDS = ["harbor", "lantern", "orbit", "meadow", "copper", "violet", "summit", "ember", "atlas", "willow"]
DAYS = [f"2027-{m:02d}-{d:02d}" for m in range(1, 13) for d in (3, 9, 14, 21, 27)]


@dataclass(frozen=True)
class Param:
    name: str
    schema: dict[str, Any]
    phrase: str
    """How a request states the value, with ``{v}``."""
    pick: Any
    """A function of rng returning the value."""


@dataclass(frozen=True)
class Spec:
    names: tuple[str, ...]
    """Spellings of the function's name (one is drawn per row)."""
    description: str
    request: tuple[str, ...]
    """Request openings, each followed by the parameters' phrases."""
    params: tuple[Param, ...]
    required: int
    """The first ``required`` params are required; the rest are optional."""
    reply: str


def _s(desc: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": desc, **extra}


def _enum(values: list[str], desc: str, default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": values, "description": desc}
    if default is not None:
        schema["default"] = default
    return schema


SPECS = [
    Spec(("get_air_quality", "airQuality", "fetch_air_quality"), "Air quality index for a city.",
         ("Check the air quality in", "How clean is the air in"),
         (Param("city", _s("City name"), "{v}", lambda r: r.choice(CITIES)),), 1, "The air quality has been fetched."),
    Spec(("exchange_rate", "get_fx_rate", "fxRate"), "Exchange rate between two currencies.",
         ("Give me the exchange rate", "What is the rate"),
         (Param("base", _s("Currency code to convert from"), "from {v}", lambda r: r.choice(CODES)),
          Param("quote", _s("Currency code to convert to"), "to {v}", lambda r: r.choice(CODES))), 2,
         "Here is the exchange rate."),
    Spec(("create_invoice", "new_invoice", "invoiceCreate"), "Create an invoice for a customer.",
         ("Create an invoice", "Make a new invoice"),
         (Param("customer", _s("Customer name"), "for {v}", lambda r: f"{r.choice(FIRST_NAMES)} {r.choice(WORDS).title()}"),
          Param("amount", {"type": "number", "description": "Amount due"}, "of {v}", lambda r: r.randint(100, 99999) / 100),
          Param("currency", _enum(["EUR", "USD", "GBP"], "Currency", "EUR"), "in {v}", lambda r: r.choice(["USD", "GBP"]))),
         2, "The invoice is created."),
    Spec(("book_room", "reserve_room", "hotelBooking"), "Book a hotel room.",
         ("Book a hotel room", "Reserve a room"),
         (Param("city", _s("City"), "in {v}", lambda r: r.choice(CITIES)),
          Param("nights", {"type": "integer", "description": "Number of nights"}, "for {v} nights", lambda r: r.randint(1, 14)),
          Param("breakfast", {"type": "boolean", "description": "Include breakfast", "default": False},
                "with breakfast", lambda r: True)), 2, "The room is booked."),
    Spec(("set_alarm", "alarm_set", "createAlarm"), "Set an alarm clock.",
         ("Set an alarm", "Wake me up with an alarm"),
         (Param("time", _s("Time as HH:MM"), "at {v}", lambda r: f"{r.randint(4, 11):02d}:{r.choice([0, 15, 30, 45]):02d}"),
          Param("label", _s("A label for the alarm"), "labelled {v}", lambda r: r.choice(WORDS))), 1, "The alarm is set."),
    Spec(("add_task", "todo_add", "createTodo"), "Add a task to a to-do list.",
         ("Add a task", "Put on my to-do list"),
         (Param("title", _s("Task title"), "called {v}", lambda r: f"{r.choice(['water', 'paint', 'sort', 'fix'])} the {r.choice(WORDS)}"),
          Param("due", _s("Due date as YYYY-MM-DD"), "due {v}", lambda r: r.choice(DAYS)),
          Param("priority", _enum(["low", "medium", "urgent"], "Priority", "medium"), "with {v} priority",
                lambda r: r.choice(["low", "urgent"]))), 1, "The task is added."),
    Spec(("search_recipes", "find_recipe", "recipeSearch"), "Search recipes by ingredients.",
         ("Find recipes with", "Search for a recipe using"),
         (Param("ingredients", {"type": "array", "items": {"type": "string"}, "description": "Ingredients"}, "{v}",
                lambda r: r.sample(["rice", "leek", "tofu", "lentils", "basil", "chickpeas", "squash"], r.randint(1, 3))),
          Param("max_minutes", {"type": "integer", "description": "Longest cooking time"}, "in under {v} minutes",
                lambda r: r.choice([15, 20, 30, 45]))), 1, "Here are some recipes."),
    Spec(("rent_bike", "bike_rental", "rentBicycle"), "Rent a bicycle.",
         ("Rent me a bike", "I want to rent a bicycle"),
         (Param("station", _s("Station name"), "at {v} station", lambda r: r.choice(WORDS).title()),
          Param("hours", {"type": "integer", "description": "Rental hours"}, "for {v} hours", lambda r: r.randint(1, 8)),
          Param("type", _enum(["city", "electric", "cargo"], "Bike type", "city"), "an {v} one", lambda r: "electric")),
         2, "The bike is rented."),
    Spec(("dim_lights", "set_brightness", "lightLevel"), "Set a lamp's brightness.",
         ("Dim the lamp", "Set the lamp"),
         (Param("lamp", _s("Lamp name"), "{v}", lambda r: r.choice(["desk lamp", "porch light", "reading lamp"])),
          Param("level", {"type": "integer", "description": "Brightness 0-100"}, "to {v} percent", lambda r: r.randint(5, 95))),
         2, "The lamp is set."),
    Spec(("water_plants", "start_irrigation", "irrigate"), "Water a garden zone.",
         ("Water", "Start the sprinklers in"),
         (Param("zone", _enum(["front", "back", "greenhouse"], "Garden zone"), "the {v} zone", lambda r: r.choice(["front", "back", "greenhouse"])),
          Param("minutes", {"type": "integer", "description": "How long"}, "for {v} minutes", lambda r: r.randint(5, 60))),
         2, "Watering has started."),
    Spec(("get_word_count", "count_words", "wordCount"), "Count the words in a text.",
         ("Count the words in", "How many words are in"),
         (Param("text", _s("The text"), "'{v}'", lambda r: " ".join(r.sample(WORDS, r.randint(2, 5)))),), 1,
         "The words are counted."),
    Spec(("ship_order", "dispatch_order", "sendShipment"), "Ship an order.",
         ("Ship order", "Dispatch order"),
         (Param("order_id", _s("Order number"), "{v}", lambda r: f"ORD-{r.randint(1000, 99999)}"),
          Param("express", {"type": "boolean", "description": "Express delivery", "default": False}, "by express",
                lambda r: True)), 1, "The order is shipped."),
    # Three and four parameters, required and optional mixed: the broad adapter's calls on unseen functions left out
    # arguments the request gave (a date, a language, a seat count), so more rows carry several.
    Spec(("book_court", "reserve_court", "courtBooking"), "Book a sports court.",
         ("Book a court", "Reserve a court"),
         (Param("sport", _enum(["tennis", "squash", "badminton"], "Sport"), "for {v}", lambda r: r.choice(["tennis", "squash", "badminton"])),
          Param("date", _s("Date as YYYY-MM-DD"), "on {v}", lambda r: r.choice(DAYS)),
          Param("start", _s("Start time as HH:MM"), "at {v}", lambda r: f"{r.randint(7, 21):02d}:{r.choice([0, 30]):02d}"),
          Param("players", {"type": "integer", "description": "Number of players", "default": 2}, "for {v} players",
                lambda r: r.choice([3, 4]))), 3, "The court is booked."),
    Spec(("rent_car", "car_hire", "hireVehicle"), "Hire a car.",
         ("Hire a car", "I need a rental car"),
         (Param("city", _s("Pick-up city"), "in {v}", lambda r: r.choice(CITIES)),
          Param("pickup_date", _s("Pick-up date as YYYY-MM-DD"), "from {v}", lambda r: r.choice(DAYS)),
          Param("days", {"type": "integer", "description": "Rental days"}, "for {v} days", lambda r: r.randint(2, 21)),
          Param("category", _enum(["small", "family", "van"], "Car category", "small"), "a {v} one",
                lambda r: r.choice(["family", "van"]))), 3, "The car is reserved."),
    Spec(("transfer_funds", "send_money", "moveMoney"), "Move money between two accounts.",
         ("Transfer", "Move"),
         (Param("amount", {"type": "number", "description": "Amount"}, "{v}", lambda r: r.randint(500, 900000) / 100),
          Param("from_account", _s("Account to take it from"), "from my {v} account", lambda r: r.choice(["savings", "current", "travel"])),
          Param("to_account", _s("Account to pay into"), "to {v}", lambda r: f"{r.choice(FIRST_NAMES)}'s account"),
          Param("note", _s("A note for the payee"), "with the note {v}", lambda r: r.choice(WORDS))), 3,
         "The money is on its way."),
    Spec(("log_workout", "record_exercise", "workoutLog"), "Record a workout.",
         ("Log a workout:", "Record my exercise:"),
         (Param("activity", _enum(["run", "swim", "cycle", "row"], "Activity"), "a {v}", lambda r: r.choice(["run", "swim", "cycle", "row"])),
          Param("minutes", {"type": "integer", "description": "Duration in minutes"}, "of {v} minutes", lambda r: r.randint(10, 120)),
          Param("distance_km", {"type": "number", "description": "Distance in km"}, "covering {v} km",
                lambda r: r.randint(10, 400) / 10)), 2, "The workout is logged."),
    Spec(("buy_tickets", "order_tickets", "ticketPurchase"), "Buy tickets for an event.",
         ("Buy tickets", "Get me tickets"),
         (Param("event", _s("Event name"), "for the {v}", lambda r: f"{r.choice(WORDS)} {r.choice(['festival', 'concert', 'match'])}"),
          Param("quantity", {"type": "integer", "description": "How many tickets"}, "{v} of them", lambda r: r.randint(2, 8)),
          Param("seating", _enum(["standing", "seated", "box"], "Seating", "seated"), "in the {v} area",
                lambda r: r.choice(["standing", "box"])),
          Param("date", _s("Date as YYYY-MM-DD"), "on {v}", lambda r: r.choice(DAYS))), 2, "The tickets are bought."),
    Spec(("create_event", "add_calendar_event", "calendarAdd"), "Add an event to the calendar.",
         ("Add to my calendar", "Create a calendar event"),
         (Param("title", _s("Event title"), "called {v}", lambda r: f"{r.choice(WORDS)} review"),
          Param("date", _s("Date as YYYY-MM-DD"), "on {v}", lambda r: r.choice(DAYS)),
          Param("start", _s("Start time as HH:MM"), "starting {v}", lambda r: f"{r.randint(8, 18):02d}:{r.choice([0, 15, 30, 45]):02d}"),
          Param("duration_minutes", {"type": "integer", "description": "Length in minutes", "default": 60},
                "lasting {v} minutes", lambda r: r.choice([15, 30, 45, 90]))), 2, "The event is in your calendar."),
    Spec(("order_groceries", "grocery_order", "shopGroceries"), "Order groceries for delivery.",
         ("Order", "Have these delivered:"),
         (Param("items", {"type": "array", "items": {"type": "string"}, "description": "Items to buy"}, "{v}",
                lambda r: r.sample(["milk", "rice", "apples", "coffee", "bread", "eggs", "butter"], r.randint(2, 4))),
          Param("delivery_date", _s("Delivery date as YYYY-MM-DD"), "for {v}", lambda r: r.choice(DAYS)),
          Param("leave_at_door", {"type": "boolean", "description": "Leave at the door", "default": False},
                "and leave them at the door", lambda r: True)), 2, "The groceries are ordered."),
]  # fmt: skip

NO_FIT = [
    ("Hi there!", "Hello! How can I help you today?"),
    ("Thank you, that was helpful.", "You're welcome!"),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("How many days are in a week?", "There are 7 days in a week."),
    ("Tell me something nice.", "You are doing great. Keep it up!"),
    ("What color is grass?", "Grass is green."),
    ("Bye for now.", "Goodbye! Have a nice day."),
    ("What is the opposite of day?", "The opposite of day is night."),
    ("Which animal barks?", "A dog barks."),
    ("Can you recommend a good habit?", "Drinking enough water every day is a good habit."),
    ("What do bees make?", "Bees make honey."),
    ("How are you today?", "I'm doing well, thank you. How can I help?"),
]


def schema(spec: Spec, name: str) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": spec.description,
        "parameters": {"type": "object", "properties": {p.name: p.schema for p in spec.params},
                       "required": [p.name for p in spec.params[: spec.required]]}}}  # fmt: skip


def _phrase(value: Any) -> str:
    if isinstance(value, list):
        return " and ".join(value) if len(value) < 3 else ", ".join(value[:-1]) + " and " + value[-1]
    return str(value)


def row(rng: random.Random, fits: bool) -> dict[str, Any]:
    """One conversation: ``{"messages", "tools"}``, with a call when ``fits``, else a plain reply."""
    specs = rng.sample(SPECS, rng.randint(2, 4))
    names = [rng.choice(s.names) for s in specs]
    tools = [schema(s, n) for s, n in zip(specs, names, strict=True)]
    if not fits:
        question, reply = rng.choice(NO_FIT)
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": reply}],
                "tools": tools}  # fmt: skip
    spec, name = specs[0], names[0]
    rng.shuffle(tools)
    used = list(spec.params[: spec.required]) + [p for p in spec.params[spec.required :] if rng.random() < 0.6]
    arguments = {p.name: p.pick(rng) for p in used}
    said = used[:1] + rng.sample(used[1:], len(used) - 1)  # after the first, the request states them in any order
    words = " ".join(p.phrase.format(v=_phrase(arguments[p.name])) for p in said)
    question = f"{rng.choice(spec.request)} {words}{rng.choice(['.', '?', ', please.', ''])}"
    result = json.dumps({"status": "ok", **{k: v for k, v in list(arguments.items())[:1]}})
    call = {"id": "call_0", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
    return {"messages": [
        {"role": "user", "content": question},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_0", "content": result},
        {"role": "assistant", "content": spec.reply},
    ], "tools": tools}  # fmt: skip
