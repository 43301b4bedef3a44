# corral — see README.md.
#   make up      install what is missing, then run the example workload
#   make test    install what is missing, then lint, type-check and run the whole suite
#   make bench   the benchmarks (not in CI)

VENV := .venv
PY := $(VENV)/bin/python3
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: deps bench-deps up test lint typecheck unit integration bench clean

deps:
	@scripts/install-deps.sh

bench-deps:
	@scripts/install-deps.sh --bench

up: deps
	@scripts/up.sh

# mypy strict for the library packages (pyproject.toml sets strict per package)
PACKAGES := runtime controlplane api clusterctl agent nodehost

lint: deps
	$(VENV)/bin/ruff check $(PACKAGES) tests bench scripts

typecheck: deps
	$(VENV)/bin/mypy $(PACKAGES)

unit: deps
	$(PY) -m pytest -q tests/unit

integration: deps
	$(PY) -m pytest -q tests/integration

test: deps
	$(VENV)/bin/ruff check $(PACKAGES) tests bench scripts
	$(VENV)/bin/mypy $(PACKAGES)
	$(PY) -m pytest -q -p no:cacheprovider tests

bench: bench-deps
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
