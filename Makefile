# The two commands: `make repro` (set up + run the pipeline) and `make test` (set up + all checks).
# Both create .venv on first use and re-install only when pyproject.toml or constraints.txt change.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup browser repro test lint typecheck pytest bench sample-data clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt -e '.[dev]'
	@touch $(STAMP)

repro: setup
	$(BIN)/python -m datapipe.cli check && $(BIN)/dvc repro

test: lint typecheck pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup browser
	$(BIN)/python -m pytest

# Headless Chromium for the report's browser test (tests/report/test_browser.py). Installed
# with apt-get when missing and possible (Debian, root); never fails the build: without it
# that test skips and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing chromium and chromium-driver for the report's browser test"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends chromium chromium-driver >/dev/null; } \
		|| echo "note: apt-get could not install chromium; the report's browser test will skip"; \
	else \
		echo "note: no chromium and no root apt-get; the report's browser test will skip"; \
	fi

bench: setup
	$(BIN)/python bench/io_throughput.py
	$(BIN)/python bench/clean_throughput.py
	$(BIN)/python bench/label_noise.py --rules
	$(BIN)/python bench/score_throughput.py
	$(BIN)/python bench/loader_throughput.py
	$(BIN)/python bench/curation_gain.py
	$(BIN)/python bench/seg_label_quality.py
	$(BIN)/python bench/stage_startup.py
	$(BIN)/python bench/clean_vs_cleanvision.py
	$(BIN)/python bench/detection_oof.py
	$(BIN)/python bench/detection_memory.py

sample-data: setup
	$(BIN)/python sample_data/make_sample_data.py

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
