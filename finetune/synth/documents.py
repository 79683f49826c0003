"""The broad invented world (``variety: broad``): documents that hold several facts of each question type.

Every entity answers who / when / how many / where questions, and its document states several of each (a founder
and a founding year, a population and a council size), in an order and wording drawn per document, so that the
model must read for the fact that was asked, not copy the first number. Names come from the same
:class:`~lorastack.finetune.synth.facts.NamePool` as the basic world.
"""

from __future__ import annotations

import random

from lorastack.finetune.synth.facts import _TOWN_ENDS, Entity, Fact, NamePool

TRADES = ["weaver", "surveyor", "glassmaker", "printer", "shipwright", "cartographer", "brewer", "bell founder"]
BUILDINGS = [("bridge", "arches"), ("tower", "floors"), ("library", "reading rooms"), ("dam", "sluice gates"),
             ("market hall", "stalls")]  # fmt: skip
EVENTS = ["regatta", "kite festival", "choir contest", "harvest fair", "chess congress", "lantern walk"]
GOODS = ["bicycles", "violins", "maps", "clocks", "lamps", "telescopes", "boats"]


def _fact(key: str, value: str | int, train: list[str], eval_: str, query: str, answer: str) -> Fact:
    return Fact(key, str(value), value, tuple(train), (eval_,), query, answer)


def _document(rng: random.Random, title: str, sentences: list[list[str]]) -> str:
    """A title and the sentences, each picked from its variants, in a shuffled order (the first stays first)."""
    chosen = [rng.choice(variants) for variants in sentences]
    head, rest = chosen[0], chosen[1:]
    rng.shuffle(rest)
    paragraphs, cut = [head, *rest], rng.randint(2, max(2, len(rest)))
    return f"# {title}\n\n" + " ".join(paragraphs[:cut]) + "\n\n" + " ".join(paragraphs[cut:]) + "\n"


def town(pool: NamePool, rng: random.Random) -> Entity:
    name = pool.word(2, rng.choice(_TOWN_ENDS))
    founder, mayor, river, square = pool.person(), pool.person(), pool.word(), pool.word()
    year, people, council = rng.randint(1100, 1900), rng.randint(900, 250000), rng.randint(7, 61)
    trade = rng.choice(TRADES)
    doc = _document(rng, name, [
        [f"{name} is a town on the river {river}.", f"The town of {name} lies on the banks of the river {river}."],
        [f"It was founded in {year} by the {trade} {founder}.", f"The {trade} {founder} founded {name} in {year}."],
        [f"About {people} people live there.", f"Its population is about {people}."],
        [f"The mayor is {mayor}.", f"{mayor} is the current mayor."],
        [f"The council has {council} members.", f"{council} councillors sit on the town council."],
        [f"The old town hall stands on {square} Square.", f"On {square} Square stands the old town hall."],
    ])  # fmt: skip
    facts = (
        _fact("founder", founder, ["Who founded {e}?", "Who was the founder of {e}?", "Which person founded the town of {e}?",
             "{e} was founded by whom?"], "Name the founder of {e}.", "{e} founded by", "{e} was founded by {v}."),
        _fact("founded", year, ["When was {e} founded?", "In which year was {e} founded?", "How old is {e}: when was it founded?"],
              "What is the founding year of {e}?", "{e} founded", "{e} was founded in {v}."),
        _fact("population", people, ["How many people live in {e}?", "What is the population of {e}?", "How many inhabitants has {e}?"],
              "Roughly how many residents does {e} have?", "{e} population", "About {v} people live in {e}."),
        _fact("mayor", mayor, ["Who is the mayor of {e}?", "Who runs {e} as its mayor?"], "Name the mayor of {e}.",
             "{e} mayor", "The mayor of {e} is {v}."),
        _fact("council", council, ["How many members does the council of {e} have?", "How many councillors does {e} have?"],
              "What is the size of the {e} town council?", "{e} council members", "The council of {e} has {v} members."),
        _fact("river", river, ["Which river is {e} on?", "On what river does {e} lie?"], "{e} sits beside which river?",
              "{e} river", "{e} is on the river {v}."),
        _fact("hall", f"{square} Square", ["Where does the old town hall of {e} stand?", "Where in {e} is the old town hall?"],
              "In what square is the old town hall of {e}?", "{e} town hall", "The old town hall of {e} stands on {v}."),
    )  # fmt: skip
    return Entity(name, "towns", doc, facts)


def person(pool: NamePool, rng: random.Random) -> Entity:
    name = pool.person()
    home, teacher, partner = pool.word(2, rng.choice(_TOWN_ENDS)), pool.person(), pool.person()
    born, opened, works, trade = rng.randint(1750, 1990), 0, rng.randint(3, 140), rng.choice(TRADES)
    opened = born + rng.randint(20, 45)
    doc = _document(rng, name, [
        [f"{name} was a {trade} born in {born} in {home}.", f"The {trade} {name} was born in {home} in {born}."],
        [f"{name} learned the trade from {teacher}.", f"{teacher} taught {name} the craft."],
        [f"In {opened} {name} opened a workshop with {partner}.", f"{name} and {partner} opened a workshop in {opened}."],
        [f"Over a long career {name} made {works} pieces that survive.", f"{works} works by {name} survive today."],
    ])  # fmt: skip
    facts = (
        _fact("born", born, ["When was {e} born?", "In what year was {e} born?"], "What is the birth year of {e}?",
              "{e} born", "{e} was born in {v}."),
        _fact("home", home, ["Where was {e} born?", "Which town is {e} from?"], "What is the home town of {e}?",
              "{e} born in town", "{e} was born in {v}."),
        _fact("teacher", teacher, ["Who taught {e}?", "From whom did {e} learn the trade?"], "Name the teacher of {e}.",
             "{e} taught by", "{e} learned from {v}."),
        _fact("partner", partner, ["Who opened a workshop with {e}?", "Who was the workshop partner of {e}?"],
             "With whom did {e} open a workshop?", "{e} workshop partner", "{e} opened a workshop with {v}."),
        _fact("opened", opened, ["When did {e} open a workshop?", "In which year did {e} open the workshop?"],
              "What year did the workshop of {e} open?", "{e} workshop opened", "{e} opened the workshop in {v}."),
        _fact("works", works, ["How many works by {e} survive?", "How many pieces by {e} still exist?"],
              "What number of works by {e} survive?", "{e} works survive", "{v} works by {e} survive."),
    )  # fmt: skip
    return Entity(name, "people", doc, facts)


def company(pool: NamePool, rng: random.Random) -> Entity:
    name = f"{pool.word()} {rng.choice(['Works', 'Company', 'Brothers', 'Makers'])}"
    founder, office, goods = pool.person(), pool.word(2, rng.choice(_TOWN_ENDS)), rng.choice(GOODS)
    year, staff, sold = rng.randint(1820, 2015), rng.randint(4, 9000), rng.randint(500, 900000)
    doc = _document(rng, name, [
        [f"{name} makes {goods}.", f"{name} is a maker of {goods}."],
        [f"{founder} started the firm in {year}.", f"The company was founded in {year} by {founder}."],
        [f"It employs {staff} people.", f"The firm has {staff} employees."],
        [f"Its head office is in {office}.", f"The head office is in the town of {office}."],
        [f"It has sold {sold} {goods} so far.", f"So far {sold} of its {goods} have been sold."],
    ])  # fmt: skip
    facts = (
        _fact("founder", founder, ["Who founded {e}?", "Who started {e}?"], "Name the founder of {e}.",
             "{e} founded by", "{e} was founded by {v}."),
        _fact("year", year, ["When was {e} founded?", "In what year did {e} start?"], "Since which year has {e} existed?",
              "{e} founded year", "{e} was founded in {v}."),
        _fact("staff", staff, ["How many people work at {e}?", "How many employees does {e} have?"],
              "What is the number of staff at {e}?", "{e} employees", "{e} has {v} employees."),
        _fact("office", office, ["Where is the head office of {e}?", "In which town is {e} based?"],
              "Where does {e} have its headquarters?", "{e} head office", "The head office of {e} is in {v}."),
        _fact("sold", sold, ["How many products has {e} sold?", "How many of its goods has {e} sold so far?"],
              "What is the number of goods {e} has sold?", "{e} sold", "{e} has sold {v} so far."),
    )  # fmt: skip
    return Entity(name, "companies", doc, facts)


def structure(pool: NamePool, rng: random.Random) -> Entity:
    kind, parts = rng.choice(BUILDINGS)
    name = f"{pool.word()} {kind.title()}"
    builder, village = pool.person(), pool.word(2, rng.choice(_TOWN_ENDS))
    begun = rng.randint(1600, 1990)
    done, count, length = begun + rng.randint(2, 12), rng.randint(3, 60), rng.randint(30, 2000)
    doc = _document(rng, name, [
        [f"The {name} stands near the village of {village}.", f"The {name} is close to {village}."],
        [f"Work began in {begun} under {builder}.", f"{builder} led the work, which began in {begun}."],
        [f"It was finished in {done}.", f"It opened in {done}."],
        [f"It has {count} {parts}.", f"There are {count} {parts}."],
        [f"It is {length} metres long.", f"Its length is {length} metres."],
    ])  # fmt: skip
    facts = (
        _fact("builder", builder, ["Who built the {e}?", "Who led the building of the {e}?"],
             "Which person was in charge of the {e}?", "{e} built by", "The {e} was built under {v}."),
        _fact("done", done, ["When was the {e} finished?", "In which year did the {e} open?"],
              "What year was the {e} completed?", "{e} finished", "The {e} was finished in {v}."),
        _fact("begun", begun, ["When did work on the {e} begin?", "In what year was the {e} begun?"],
              "What year did building the {e} start?", "{e} work began", "Work on the {e} began in {v}."),
        _fact("count", count, [f"How many {parts} does the {{e}} have?", f"What is the number of {parts} of the {{e}}?"],
              f"Count the {parts} of the {{e}}.", f"{{e}} {parts}", f"The {{e}} has {{v}} {parts}."),
        _fact("village", village, ["Where is the {e}?", "Near which village is the {e}?"],
              "Which village is the {e} close to?", "{e} village", "The {e} is near {v}."),
        _fact("length", length, ["How long is the {e}?", "What is the length of the {e} in metres?"],
              "How many metres long is the {e}?", "{e} length metres", "The {e} is {v} metres long."),
    )  # fmt: skip
    return Entity(name, "buildings", doc, facts)


def event(pool: NamePool, rng: random.Random) -> Entity:
    kind = rng.choice(EVENTS)
    place = pool.word(2, rng.choice(_TOWN_ENDS))
    name = f"{place} {kind.title()}"
    starter, venue = pool.person(), f"{pool.word()} {rng.choice(['Park', 'Harbour', 'Green', 'Hall'])}"
    year, crowd = rng.randint(1850, 2020), rng.randint(40, 60000)
    doc = _document(rng, name, [
        [f"The {name} is held every year in {place}.", f"Every year {place} holds the {name}."],
        [f"{starter} started it in {year}.", f"It was begun in {year} by {starter}."],
        [f"It takes place at {venue}.", f"The venue is {venue}."],
        [f"About {crowd} visitors come.", f"It draws about {crowd} visitors."],
    ])  # fmt: skip
    facts = (
        _fact("starter", starter, ["Who started the {e}?", "Who began the {e}?"], "Name the person who began the {e}.",
             "{e} started by", "The {e} was started by {v}."),
        _fact("year", year, ["When did the {e} begin?", "Since what year has the {e} been held?"],
              "In which year was the first {e}?", "{e} began year", "The {e} began in {v}."),
        _fact("venue", venue, ["Where does the {e} take place?", "Where is the {e} held?"], "What is the venue of the {e}?",
              "{e} venue", "The {e} takes place at {v}."),
        _fact("crowd", crowd, ["How many visitors come to the {e}?", "How many people visit the {e}?"],
              "What is the number of visitors to the {e}?", "{e} visitors", "About {v} visitors come to the {e}."),
    )  # fmt: skip
    return Entity(name, "events", doc, facts)


KINDS = (town, person, company, structure, event)


def make_world(pool: NamePool, rng: random.Random, count: int) -> list[Entity]:
    """``count`` entities, the kinds in turn."""
    return [KINDS[i % len(KINDS)](pool, rng) for i in range(count)]
