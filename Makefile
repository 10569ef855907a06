# Two commands, each setting up its own environment on a fresh machine:
#   make series   run every notebook in order (full mode), saving outputs, figures, results
#   make test     unit tests, then every notebook executed by nbval in quick mode
# Local copies of the data and weights: see "Offline use" in README.md.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))

.PHONY: series test lint clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $(STAMP)

series: $(STAMP)
	@for nb in $(NOTEBOOKS); do \
		echo "== $$nb"; \
		start=$$(date +%s); \
		$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=-1 "$$nb" || exit 1; \
		echo "   $$(( $$(date +%s) - start )) s"; \
	done

test: $(STAMP)
	CIFAR_UTILS_QUICK=1 $(BIN)/python -m pytest --nbval-lax tests notebooks

lint: $(STAMP)
	$(BIN)/ruff check cifar_utils tests

clean:
	rm -rf $(VENV) .cache .pytest_cache
