# Two commands matter: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   := build/demo
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup clamav demo test lint bench clean

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

# Intake scans uploads with ClamAV; the tests write their own signature file.
clamav:
	@if ! command -v clamscan >/dev/null || ! [ -x /usr/sbin/clamd ]; then \
		echo "Installing Debian's clamav and clamav-daemon..."; \
		$(SUDO) apt-get install -y -qq clamav clamav-daemon >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq clamav clamav-daemon >/dev/null; }; \
	fi

test: setup clamav
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .

bench: setup clamav
	$(PY) bench/train_overhead.py
	$(PY) bench/intake_throughput.py

clean:
	rm -rf build output
