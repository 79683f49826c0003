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


# ``variety: broad``: more plain knowledge, so the adapter keeps answering what the base model knows without a tool.
# None of these facts is asked by agent/evalsets/no_tool.jsonl (a test checks the wording).
BROAD_FACTS: list[tuple[str, str]] = [
    ("How many legs does a dog have?", "A dog has 4 legs."),
    ("How many seconds are in a minute?", "There are 60 seconds in a minute."),
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi."),
    ("Which ocean lies between Europe and America?", "The Atlantic Ocean lies between Europe and America."),
    ("What is the tallest animal?", "The giraffe is the tallest animal."),
    ("What do we call a baby cat?", "A baby cat is called a kitten."),
    ("What colour is a ripe tomato?", "A ripe tomato is red."),
    ("How many hours are in two days?", "There are 48 hours in two days."),
    ("Which planet is known as the red planet?", "Mars is known as the red planet."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What is the largest desert in Africa?", "The Sahara is the largest desert in Africa."),
    ("What do fish use to breathe?", "Fish breathe with their gills."),
    ("What is the opposite of fast?", "The opposite of fast is slow."),
    ("What is the opposite of light?", "The opposite of light is dark."),
    ("Which season comes after summer?", "Autumn comes after summer."),
    ("How many sides does a hexagon have?", "A hexagon has 6 sides."),
    ("What is the main language of Germany?", "The main language of Germany is German."),
    ("What is the capital of Australia?", "The capital of Australia is Canberra."),
    ("Which metal is liquid at room temperature?", "Mercury is a metal that is liquid at room temperature."),
    ("What do pandas mostly eat?", "Pandas mostly eat bamboo."),
    ("How many strings does a standard guitar have?", "A standard guitar has 6 strings."),
    ("What is the fastest land animal?", "The cheetah is the fastest land animal."),
    ("Who was the first person to walk on the Moon?", "Neil Armstrong was the first person to walk on the Moon."),
    ("What is the hardest natural material?", "Diamond is the hardest natural material."),
    ("In which country is the Eiffel Tower?", "The Eiffel Tower is in France."),
    ("What is the capital of Brazil?", "The capital of Brazil is Brasilia."),
    ("How many wheels does a tricycle have?", "A tricycle has 3 wheels."),
    ("What colour is a clear night sky?", "A clear night sky is black or dark blue."),
    ("Which organ pumps blood through the body?", "The heart pumps blood through the body."),
    ("What is the largest continent?", "Asia is the largest continent."),
    ("What do you call a young sheep?", "A young sheep is called a lamb."),
    ("How many zeros are in one thousand?", "One thousand has 3 zeros."),
    ("Which instrument has black and white keys?", "The piano has black and white keys."),
    ("Who wrote the Odyssey?", "Homer wrote the Odyssey."),
    ("What is the capital of Mexico?", "The capital of Mexico is Mexico City."),
    ("Which gas do plants take in from the air?", "Plants take in carbon dioxide from the air."),
    ("Which day comes after Friday?", "Saturday comes after Friday."),
    ("Which month has the fewest days?", "February has the fewest days."),
    ("What is the longest river in Africa?", "The Nile is the longest river in Africa."),
    ("What shape is a ball?", "A ball is round, a sphere."),
    ("What is the capital of China?", "The capital of China is Beijing."),
    ("Which animal has a trunk?", "The elephant has a trunk."),
    ("What do caterpillars become?", "Caterpillars become butterflies or moths."),
    ("How many players are in a basketball team on the court?", "A basketball team has 5 players on the court."),
    ("What is H2O?", "H2O is water."),
    ("Which language is spoken in Argentina?", "Spanish is spoken in Argentina."),
    ("What is the smallest prime number?", "The smallest prime number is 2."),
    ("What do we call the frozen top of a mountain?", "It is called a snow cap."),
    ("Who discovered penicillin?", "Alexander Fleming discovered penicillin."),
    ("Tell me a fun fact.", "Octopuses have three hearts."),
    ("Can you give me a tip for sleeping better?", "Go to bed at the same time every night."),
    ("Write a short greeting for a birthday card.", "Happy birthday! Wishing you a wonderful year ahead."),
    ("What is a synonym for happy?", "A synonym for happy is joyful."),
    ("Say hello in Spanish.", "Hola!"),
    ("What is the plural of mouse?", "The plural of mouse is mice."),
    ("What does a thermometer measure?", "A thermometer measures temperature."),
]


def broad_pool() -> list[tuple[str, str]]:
    """The training pool of ``variety: broad``: the basic pool and :data:`BROAD_FACTS`."""
    return train_pool() + BROAD_FACTS
