# Two commands matter: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBIAN := clamav clamav-daemon curl jq chromium chromium-driver
STACK  := PYTHONPATH=plugins $(PY) -m lora_airflow.local_stack

.PHONY: setup debian demo up down test lint bench clean

$(STAMP): requirements.txt requirements-train.txt requirements-dev.txt requirements-nsfw.txt constraints.txt pyproject.toml
	@echo "Installing the pinned stack into $(VENV) (about 3 minutes the first time)..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install -qq --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

# Intake scans uploads with ClamAV (the demo and the tests write their own signature file);
# the README's REST walkthrough uses curl and jq, and a test runs it; the platform page's test drives
# Debian's chromium through its chromedriver.
debian:
	@if ! command -v clamscan >/dev/null || ! [ -x /usr/sbin/clamd ] || ! command -v jq >/dev/null \
			|| ! command -v curl >/dev/null || ! [ -x /usr/bin/chromedriver ]; then \
		echo "Installing Debian's clamav, clamav-daemon, curl, jq, chromium and chromium-driver..."; \
		$(SUDO) apt-get install -y -qq $(DEBIAN) >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(DEBIAN) >/dev/null; }; \
	fi

# Builds the tiny model and sample data, then runs the lora_finetune DAG once (dag.test).
demo: setup debian
	$(STACK) demo

# Airflow for a person: UI and REST API on http://localhost:8080 (LORA_AIRFLOW_PORT), `make down` stops it.
up: setup debian
	$(STACK) up

down:
	$(STACK) down

test: setup debian
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .

bench: setup debian
	$(PY) bench/train_overhead.py
	$(PY) bench/intake_throughput.py
	$(PY) bench/dag_parse.py
	$(PY) bench/orchestration_overhead.py
	$(PY) bench/light_tasks.py
	$(PY) bench/scheduling_policies.py
	$(PY) bench/simulator_scaling.py
	$(PY) bench/realtime_day.py
	$(PY) bench/memory_model.py --fit
	$(PY) bench/duration_predictor.py
	$(PY) bench/publish_throughput.py
	$(PY) bench/serve_cache.py
	$(PY) bench/serve_switch.py --rounds 7
	$(PY) bench/serve_switch.py --model sd15 --rounds 5 --steps 10
	$(PY) bench/lora_params.py
	$(PY) bench/text_train.py --fit
	$(PY) bench/submission_latency.py

clean:
	rm -rf build output
