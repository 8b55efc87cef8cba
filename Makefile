# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each target sets itself up: Debian packages for the default corpus and the SSH tests, a .venv
# with the CPU build of torch pinned and this package in editable mode, and a .venv-agent with
# only the measuring agent (agent/: onnxruntime and numpy, no torch), the SSH tests' target.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
AGENT_VENV  := .venv-agent
AGENT_STAMP := $(AGENT_VENV)/.installed
# agent/devices and agent/latency are symlinks to these: reinstall when any of them changes
AGENT_SOURCES := $(wildcard devices/*.py devices/profiles/*.toml latency/*.py)
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_PACKAGES := libsword-utils sword-text-sparv sword-text-web openssh-server

.PHONY: setup system-packages test lint demo clean

setup: system-packages $(STAMP) $(AGENT_STAMP)

system-packages:
	@if ! command -v mod2imp >/dev/null 2>&1 || ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "installing Debian packages: $(APT_PACKAGES)"; \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES); \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

# setuptools leaves agent/build behind and copies it into the next wheel, deleted files and all
$(AGENT_STAMP): agent/pyproject.toml $(AGENT_SOURCES)
	rm -rf agent/build agent/mos_search_agent.egg-info
	$(PYTHON) -m venv $(AGENT_VENV)
	$(AGENT_VENV)/bin/python -m pip install -q ./agent
	rm -rf agent/build agent/mos_search_agent.egg-info
	touch $(AGENT_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The test command (what .ci/run calls): lint, then every test not marked slow.
# pytest exits 5 when it collects nothing, which fails this target too.
test: setup lint
	$(BIN)/python -m pytest -m "not slow" -q

# The main job: the whole chain on the embedded defaults (about 20 minutes on 2 cores).
# Rerunning continues where it stopped; DEMO_ARGS scales it, e.g. DEMO_ARGS="--minutes 60".
demo: setup
	$(BIN)/mos-search demo $(DEMO_ARGS)

clean:
	rm -rf $(VENV) $(AGENT_VENV) build *.egg-info agent/build agent/*.egg-info \
		.pytest_cache .ruff_cache
