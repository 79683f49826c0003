# The two commands of the README. Both set up .venv first (once; scripts/setup.sh).
QUESTION ?= What is 17 * 23?
PY := .venv/bin/python

.PHONY: setup demo test bench
setup:
	@scripts/setup.sh

demo: setup
	@.venv/bin/lorastack ask "$(QUESTION)"

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/serve_bench.py
	$(PY) benchmarks/front_door_bench.py
	$(PY) benchmarks/keystore_bench.py
