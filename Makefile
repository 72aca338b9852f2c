# Two commands matter: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := build/demo

.PHONY: setup demo test lint bench clean

$(STAMP): requirements.txt requirements-train.txt requirements-dev.txt constraints.txt
	@echo "Installing the pinned stack into $(VENV) (about 3 minutes the first time)..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

setup: $(STAMP)

$(DEMO)/models/tiny-sd/model_index.json: $(STAMP) lora_tasks/tiny.py
	$(PY) -m lora_tasks.tiny model $(DEMO)/models/tiny-sd

$(DEMO)/dataset/.done: $(STAMP) lora_tasks/sample_data.py
	rm -rf $(DEMO)/dataset
	$(PY) -m lora_tasks.tiny dataset $(DEMO)/dataset
	touch $@

demo: $(DEMO)/models/tiny-sd/model_index.json $(DEMO)/dataset/.done
	$(PY) -m lora_tasks.train --config include/jobs/demo.yaml

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) bench/train_overhead.py

clean:
	rm -rf build output
