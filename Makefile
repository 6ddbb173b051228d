# The commands of README.md. Each does all of its own set-up on a fresh machine and is
# idempotent: a second run only re-checks what is already there.
#   make demo   the embedded pipeline on the bundled sample
#   make test   the whole test suite (what .ci/run calls)
#   make check  lint, types and the fast tier (-m "not slow": no broker, Milvus server, browser,
#               helm tools or separate processes), in under 3 minutes on a 2-core machine

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test check bench scale-report setup test-deps clean

demo: setup
	$(BIN)/facestream demo

test: setup test-deps
	$(BIN)/ruff check src services schemas tests load-tests examples
	$(BIN)/mypy
	scripts/dependency-audit.sh
	$(BIN)/python -m pytest

check: setup
	$(BIN)/ruff check src services schemas tests load-tests examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow"

setup: $(STAMP)
	$(BIN)/facestream models fetch >/dev/null

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# Per-stage cost and end-to-end throughput, written to load-tests/reports/ (not part of CI).
bench: setup
	$(BIN)/python load-tests/bench.py

# The scale report (gallery at 10k-1M on a real Milvus server, the pipeline through a real broker,
# sampler cost, reviewers' workload, capacity model): load-tests/reports/scale-<timestamp>/.
scale-report: setup
	scripts/kafka.sh fetch
	$(BIN)/python load-tests/scale_report.py --size full

# Everything the tests need beyond Python packages: each script is idempotent and caches.
test-deps:
	scripts/kafka.sh fetch
	scripts/browser-tools.sh
	scripts/k8s-tools.sh
	scripts/sso-tools.sh
	scripts/schema-registry.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var
