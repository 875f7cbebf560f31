# The two commands of the README: `make demo` (the main job on its built-in default) and `make test`.
VENV ?= .venv
STAMP := $(VENV)/.installed
OUT ?= runs/demo

.PHONY: demo test setup bench clean

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/azote demo --out $(OUT)

# lint first: an unused import or a misplaced one fails in seconds, before minutes of tests
test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/python -m pytest -n 2 -q --timeout 900

bench: $(STAMP)
	for b in benchmarks/*.py; do $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
