"""An invented world for the search tool: towns, people and products with made-up names, numbers and dates.

Every name comes from one :class:`NamePool`, so no name is used twice, none is part of another, and the
train and eval corpora share no entity. Each entity is one small Markdown document; each of its facts can
be asked with train phrasings or (different) eval phrasings.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST_NAMES = ["Ada", "Bram", "Cora", "Dario", "Edda", "Felix", "Greta", "Henrik", "Ines", "Jorah", "Kaia", "Lukas",
               "Mira", "Nils", "Opal", "Petra", "Quinn", "Runa", "Soren", "Tilde", "Ulla", "Viggo", "Wren",
               "Ximena"]  # fmt: skip
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]  # fmt: skip
FOODS = ["cheese", "honey", "apple", "bread", "plum", "mushroom", "pepper", "herring"]
PROFESSIONS = ["painter", "chemist", "builder", "composer", "botanist", "clockmaker"]  # no "an" needed
WORKS = ["folding bridge", "glass organ", "rain clock", "copper loom", "wind lamp", "salt battery", "paper kiln"]
CATEGORIES = ["kettle", "bicycle", "desk lamp", "drone", "coffee grinder", "sewing machine", "telescope"]
COLORS = ["red", "green", "navy blue", "white", "orange", "grey", "yellow"]

_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "qu", "r", "s", "st", "t",
           "th", "v", "w", "z", "zh"]  # fmt: skip
_VOWELS = ["a", "e", "i", "o", "u", "y"]
_CODAS = ["", "", "n", "r", "l", "m", "s", "x"]
_TOWN_ENDS = ["by", "wick", "ford", "dale", "holm", "mere", "ton", "port"]


class NamePool:
    """Unique invented names: none repeats, none contains another, none is part of ``reserved`` text."""

    def __init__(self, rng: random.Random, reserved: str = "") -> None:
        self.rng = rng
        self.used: list[str] = []
        self.reserved = reserved.lower()

    def word(self, syllables: int = 2, end: str = "") -> str:
        while True:
            name = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                           for _ in range(syllables)) + end  # fmt: skip
            low = name.lower()
            if len(low) < 5 or low in self.reserved or any(low in u or u in low for u in self.used):
                continue
            self.used.append(low)
            return name.capitalize()

    def person(self) -> str:
        return f"{self.rng.choice(FIRST_NAMES)} {self.word()}"


@dataclass(frozen=True)
class Fact:
    key: str
    text: str
    """The value as the document writes it (and as a correct answer must contain it)."""
    value: str | int
    """The eval answer: a number where the fact is one."""
    train: tuple[str, ...]
    """Question phrasings used in training, with ``{e}`` for the entity's name."""
    eval: tuple[str, ...]
    """Held-out phrasings, never used in training."""
    query: str
    """Search keywords, with ``{e}``."""
    answer: str
    """The final reply, with ``{e}`` and ``{v}``."""


@dataclass(frozen=True)
class Entity:
    name: str
    folder: str
    document: str
    facts: tuple[Fact, ...]

    @property
    def relpath(self) -> str:
        return f"{self.folder}/{self.name.lower().replace(' ', '-')}.md"


def town(pool: NamePool, rng: random.Random) -> Entity:
    name = pool.word(2, rng.choice(_TOWN_ENDS))
    year, people, mayor, river = rng.randint(1620, 1950), rng.randint(800, 95000), pool.person(), pool.word()
    food, month = rng.choice(FOODS), rng.choice(MONTHS)
    document = (
        f"# {name}\n\n{name} is a town on the river {river}. It was founded in {year} and has about {people} "
        f"people.\n\nThe mayor of {name} is {mayor}. Every {month} it holds a "
        f"{food} festival.\n"
    )
    facts = (
        Fact("founded", str(year), year, ("When was {e} founded?", "In what year was the town of {e} founded?"),
             ("How old is the town {e}; which year did it begin?",), "{e} founded", "{e} was founded in {v}."),
        Fact("population", str(people), people, ("How many people live in {e}?", "What is the population of {e}?"),
             ("Roughly how many inhabitants does {e} have?",), "{e} population", "About {v} people live in {e}."),
        Fact("mayor", mayor, mayor, ("Who is the mayor of {e}?", "Who runs {e} as mayor?"),
             ("Name the person who is mayor of {e}.",), "{e} mayor", "The mayor of {e} is {v}."),
        Fact("river", river, river, ("Which river is {e} on?", "What river runs through {e}?"),
             ("{e} sits beside which river?",), "{e} river", "{e} is on the river {v}."),
        Fact("festival", month, month, ("In which month is the festival in {e}?", "When does {e} hold its festival?"),
             ("What month should I visit {e} to see its festival?",), "{e} festival",
             "{e} holds its festival in {v}."),
    )  # fmt: skip
    return Entity(name, "towns", document, facts)


def person(pool: NamePool, rng: random.Random) -> Entity:
    name = pool.person()
    first = name.split()[0]
    home, born, job = pool.word(2, rng.choice(_TOWN_ENDS)), rng.randint(1801, 1990), rng.choice(PROFESSIONS)
    work = f"{pool.word()} {rng.choice(WORKS)}"
    document = (
        f"# {name}\n\n{name} is a {job} from {home}. {first} was born in {born}.\n\n"
        f"{name} is best known for the {work}.\n"
    )
    facts = (
        Fact("born", str(born), born, ("When was {e} born?", "In what year was {e} born?"),
             ("What is the birth year of {e}?",), "{e} born", "{e} was born in {v}."),
        Fact("home", home, home, ("Where is {e} from?", "Which town does {e} come from?"),
             ("What is the home town of {e}?",), "{e} home town", "{e} is from {v}."),
        Fact("work", work, work, ("What is {e} best known for?", "What made {e} famous?"),
             ("For which creation is {e} remembered?",), "{e} known for", "{e} is best known for the {v}."),
        Fact("job", job, job, ("What does {e} do for a living?", "What is the profession of {e}?"),
             ("What kind of work does {e} do?",), "{e} profession", "{e} is a {v}."),
    )  # fmt: skip
    return Entity(name, "people", document, facts)


def product(pool: NamePool, rng: random.Random) -> Entity:
    name = f"{pool.word()} {rng.choice('KMRTVX')}{rng.randint(2, 99)}"
    maker, category = f"{pool.word()} Works", rng.choice(CATEGORIES)
    year, price, grams = rng.randint(1995, 2024), rng.randint(19, 2400), rng.randint(150, 9000)
    color = rng.choice(COLORS)
    document = (
        f"# {name}\n\nThe {name} is a {category} made by {maker}. It went on sale in {year} for "
        f"${price}.\n\nIt weighs {grams} grams and comes in {color}.\n"
    )
    facts = (
        Fact("maker", maker, maker, ("Who makes the {e}?", "Which company produces the {e}?"),
             ("What is the manufacturer of the {e}?",), "{e} maker", "The {e} is made by {v}."),
        Fact("year", str(year), year, ("When did the {e} go on sale?", "What year was the {e} released?"),
             ("Since which year can you buy the {e}?",), "{e} on sale year", "The {e} went on sale in {v}."),
        Fact("price", str(price), price, ("How much does the {e} cost?", "What is the price of the {e}?"),
             ("What did the {e} sell for at launch, in dollars?",), "{e} price", "The {e} costs ${v}."),
        Fact("weight", str(grams), grams, ("How much does the {e} weigh?", "What is the weight of the {e}?"),
             ("How heavy is the {e} in grams?",), "{e} weight grams", "The {e} weighs {v} grams."),
        Fact("color", color, color, ("What color is the {e}?", "Which colour does the {e} come in?"),
             ("In what colour is the {e} sold?",), "{e} colour", "The {e} comes in {v}."),
    )  # fmt: skip
    return Entity(name, "products", document, facts)


KINDS = (town, person, product)


def make_world(pool: NamePool, rng: random.Random, count: int) -> list[Entity]:
    """``count`` entities, the kinds in turn."""
    return [KINDS[i % len(KINDS)](pool, rng) for i in range(count)]
