# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Each target sets itself up: Debian packages for the default corpus, a .venv with the
# CPU build of torch pinned, and this package in editable mode.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
APT_PACKAGES := libsword-utils sword-text-sparv sword-text-web

.PHONY: setup system-packages test lint demo clean

setup: system-packages $(STAMP)

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
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
