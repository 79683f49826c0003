"""Synthetic chat data for the GPU training benchmark.

Run as: python benchmarks/gpu/make_data.py OUT.jsonl ROWS {fixed|mixed}
fixed: every conversation is longer than 1024 tokens, so at max_length 1024 each example is exactly 1024
tokens (the probe's shape: bs x 1024, no padding). mixed: lengths spread over 64-1024 tokens, as real chat
data is, to compare padded with padding-free batches.
"""

import json
import random
import sys

WORDS = ("model adapter server token batch memory kernel weight gradient layer attention river bridge city "
         "north garden window paper music number answer question reason simple quick bright").split()


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def main() -> None:
    out, rows, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rng = random.Random(0)
    with open(out, "w") as fh:
        for _ in range(rows):
            answer_words = 1100 if mode == "fixed" else rng.randint(30, 700)
            row = {"messages": [
                {"role": "user", "content": text(rng, 20)},
                {"role": "assistant", "content": text(rng, answer_words)},
            ]}
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
