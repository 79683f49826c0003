"""Questions that need no tool: greetings and common knowledge, answered directly.

Train and eval use different questions (eval asks other capitals and other facts, in other words).
"""

from __future__ import annotations

TRAIN_GREETINGS: list[tuple[str, str]] = [
    ("Hi!", "Hello! How can I help you today?"),
    ("Hello", "Hello! What can I do for you?"),
    ("Good morning!", "Good morning! How can I help?"),
    ("Hey, how are you?", "I'm doing well, thank you. How can I help you?"),
    ("Thanks for your help.", "You're welcome!"),
    ("Thank you!", "You're welcome. Anything else?"),
    ("Who are you?", "I am a helpful assistant. I can do arithmetic with a calculator and look up facts with a "
                     "search tool."),
    ("What can you do?", "I can answer questions, do calculations with my calculator and search for facts."),
    ("Goodbye!", "Goodbye! Have a nice day."),
]  # fmt: skip

TRAIN_CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Egypt", "Cairo"),
                  ("Canada", "Ottawa"), ("Spain", "Madrid"), ("Germany", "Berlin"), ("Kenya", "Nairobi"),
                  ("Peru", "Lima"), ("Norway", "Oslo"), ("Russia", "Moscow"), ("China", "Beijing")]  # fmt: skip
TRAIN_CAPITAL_QUESTIONS = ["What is the capital of {c}?", "What's the capital city of {c}?"]

TRAIN_FACTS: list[tuple[str, str | int, str]] = [
    ("How many days are in a week?", 7, "There are 7 days in a week."),
    ("What color is the sky on a clear day?", "blue", "The sky is blue on a clear day."),
    ("What is the opposite of hot?", "cold", "The opposite of hot is cold."),
    ("How many legs does a spider have?", 8, "A spider has 8 legs."),
    ("What do bees make?", "honey", "Bees make honey."),
    ("Which planet do we live on?", "Earth", "We live on Earth."),
    ("What is the largest ocean on Earth?", "Pacific", "The Pacific Ocean is the largest."),
    ("What language is spoken in Brazil?", "Portuguese", "Portuguese is spoken in Brazil."),
    ("How many hours are in a day?", 24, "There are 24 hours in a day."),
    ("What animal says moo?", "cow", "A cow says moo."),
    ("Which season comes after winter?", "spring", "Spring comes after winter."),
    ("What is the chemical symbol for water?", "H2O", "The chemical formula of water is H2O."),
]

EVAL_CAPITALS = [("Portugal", "Lisbon"), ("Greece", "Athens"), ("Sweden", "Stockholm"), ("Ireland", "Dublin"),
                 ("Poland", "Warsaw"), ("Thailand", "Bangkok"), ("Austria", "Vienna"),
                 ("Argentina", "Buenos Aires")]  # fmt: skip
EVAL_CAPITAL_QUESTION = "Which city is {c}'s capital?"
EVAL_FACTS: list[tuple[str, str | int]] = [
    ("How many months does a year have?", 12),
    ("What do we call water when it freezes?", "ice"),
    ("How many legs does a cat have?", 4),
    ("What gas do humans need to breathe?", "oxygen"),
    ("What is the opposite of up?", "down"),
    ("What colour is fresh grass?", "green"),
    ("Which star is closest to the Earth?", "Sun"),
    ("What is the name of the natural satellite that orbits the Earth?", "Moon"),
]


def train_pool() -> list[tuple[str, str]]:
    """Every (question, reply) pair that training draws from."""
    capitals = [(q.format(c=c), f"The capital of {c} is {city}.") for c, city in TRAIN_CAPITALS
                for q in TRAIN_CAPITAL_QUESTIONS]  # fmt: skip
    return TRAIN_GREETINGS + capitals + [(q, reply) for q, _, reply in TRAIN_FACTS]


def eval_pool() -> list[tuple[str, str | int]]:
    """Every held-out (question, answer) pair."""
    return [(EVAL_CAPITAL_QUESTION.format(c=c), city) for c, city in EVAL_CAPITALS] + EVAL_FACTS
