# Two commands, each setting up its own environment on a fresh machine:
#   make series   run every notebook in order (full mode), saving outputs, figures, results
#                 (one of them: make series NOTEBOOKS=notebooks/01_baseline_cnn.ipynb)
#   make publish REPOSITORY=https://github.com/owner/name   its address, before publishing
#   make test     unit tests, then every notebook executed by nbval in quick mode
#   make install  only the environment, for .venv/bin/jupyter lab notebooks/
# Local copies of the data and weights: see "Offline use" in DEVELOPING.md.
# Python 3.11, 3.12 or 3.13; another interpreter with e.g. `make PYTHON=python3.12 test`.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
SUPPORTED := 3.11 3.12 3.13

.PHONY: install series test lint clean check-python publish ship-models results-tables check-exercises

# TensorFlow 2.21 has no wheels for 3.14, and the pinned NumPy, pandas, matplotlib,
# Keras and ipykernel need 3.11: stop before pip's resolver errors, and say what to do.
check-python:
	@version=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	case " $(SUPPORTED) " in \
		*" $$version "*) ;; \
		*) echo "This project needs Python 3.11, 3.12 or 3.13 (TensorFlow 2.21 and the pinned" \
		        "packages); '$(PYTHON)' is $${version:-not a Python interpreter found on PATH}." \
		        "Name a supported one, e.g. 'make PYTHON=python3.12 $(or $(MAKECMDGOALS),test)'." >&2; \
		   exit 1;; \
	esac

$(STAMP): requirements.txt pyproject.toml | check-python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e .
	touch $(STAMP)

# Only the environment: .venv/ with the pinned packages (JupyterLab included) and this package.
install: $(STAMP)

# Full mode saves each executed notebook in place (the committed outputs); quick mode must not
# replace them, so its executed copies go to build/quick/notebooks/.
ifneq ($(filter 1 true yes TRUE YES True Yes,$(CIFAR_UTILS_QUICK)),)
EXECUTED := --output-dir build/quick/notebooks
else
EXECUTED := --inplace
endif

series: $(STAMP)
	@for nb in $(NOTEBOOKS); do \
		echo "== $$nb"; \
		start=$$(date +%s); \
		$(BIN)/jupyter nbconvert --to notebook --execute $(EXECUTED) \
			--ExecutePreprocessor.timeout=-1 "$$nb" || exit 1; \
		echo "   $$(( $$(date +%s) - start )) s"; \
	done

test: $(STAMP)
	CIFAR_UTILS_QUICK=1 $(BIN)/python -m pytest --nbval-lax tests notebooks

# Before publishing: the repository's address into every Colab badge and setup cell.
publish:
	$(PYTHON) tools/publish.py "$(REPOSITORY)"

# After a full run: the models of 01, 03 and 05 into models/ (RUNS=... picks some), for fresh clones.
ship-models: $(STAMP)
	$(BIN)/python tools/ship_models.py $(RUNS)

# After a full run: RESULTS.md and the README's tables, computed from results/ (needs the test labels).
results-tables: $(STAMP)
	$(BIN)/python tools/results_tables.py

# Every "Try it yourself" exercise as written, in quick mode, writing only to its own folder
# (one quick-mode notebook run per exercise); EXERCISES="01 03.2" picks some.
check-exercises: $(STAMP)
	$(BIN)/python tools/check_exercises.py $(EXERCISES)

lint: $(STAMP)
	$(BIN)/ruff check cifar_utils tests tools

clean:
	rm -rf $(VENV) .cache .pytest_cache
