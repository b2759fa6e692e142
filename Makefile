# dipbench — `make benchmark` and `make test` set everything up on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
SUITE  ?= default
# local (one run after another) | ray (one run per GPU on this box; RUN_ARGS=--address=… for a cluster) | slurm
EXECUTOR ?= local
RUN_ARGS ?=
RESULTS ?= results
REPORTS ?= reports/out
# torch first (pinned, from local disk where it lies there), then the project, so pip
# never resolves torch on its own; the same pins install a CUDA build on GPU machines.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: setup benchmark report status throughput perf test test-fast golden system-deps data-cbsd68 clean-results

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PINS)
	$(PIP) install --quiet -e ".[test]"
	touch $@

setup: $(VENV)/.installed system-deps

# BART (coil sensitivities for the MRI task) is a system package: installed with apt
# where apt is available and we are root; otherwise see README ("BART").
system-deps:
	@if command -v bart >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get install -y -q bart >/dev/null || echo "warning: apt-get install bart failed; MRI tests that need BART will skip"; \
	else echo "note: BART not found and cannot install it here (see README, BART); MRI tasks fall back or skip"; fi

# the report is rendered also when runs failed (exit 1: it lists them); the exit status stays run's
benchmark: setup
	$(PY) -m benchmark run $(SUITE) --executor $(EXECUTOR) --results $(RESULTS) $(RUN_ARGS); rc=$$?; \
	if [ $$rc -le 1 ]; then $(PY) -m benchmark report --results $(RESULTS) --out $(REPORTS) || exit $$?; fi; exit $$rc

status: $(VENV)/.installed
	$(PY) -m benchmark status --results $(RESULTS)

# Ray grid throughput with 1 vs 2 workers on tiny runs (README, "Running at scale")
throughput: $(VENV)/.installed
	$(PY) -m benchmark.throughput

# speed as ratios side by side (benchmark/perf.py): harness vs plain loop, batched seeds, precision, operators,
# peak memory; run it alone on the machine. PERF_ARGS=--quick: a few minutes on a 2-core CPU
PERF_ARGS ?=
perf: $(VENV)/.installed
	$(PY) -m benchmark.perf --out docs/results/perf.txt $(PERF_ARGS)

report: $(VENV)/.installed
	$(PY) -m benchmark report --results $(RESULTS) --out $(REPORTS) --snapshot docs/results

test: setup
	$(VENV)/bin/ruff check .
	@start=$$(date +%s); $(VENV)/bin/pytest -q; rc=$$?; echo "make test: tests took $$(( $$(date +%s) - start )) s"; exit $$rc

# development loop: everything but the end-to-end runs marked slow (make test runs them too)
test-fast: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -m "not slow"

# The CI regression's golden file (tests/golden/ci_small.json): rewrite it on purpose only, and say why in the
# commit message (benchmark/golden.py).
golden: setup
	$(PY) -m benchmark.golden write --results $(RESULTS)

# CBSD68 for users (public repository of the dataset's PNGs).
data-cbsd68:
	@test -d data/cbsd68 && echo "data/cbsd68 already exists" || ( \
	  git clone --depth 1 https://github.com/clausmichele/CBSD68-dataset.git .cache/CBSD68-dataset && \
	  mkdir -p data && cp -r .cache/CBSD68-dataset/CBSD68/original_png data/cbsd68 && echo "CBSD68 → data/cbsd68" )

clean-results:
	rm -rf $(RESULTS) $(REPORTS)
