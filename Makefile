# Two commands for a newcomer: `make run` (set up + default workflow) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: setup run test report lint dry-run bench clean

$(BIN)/snakemake:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[test,slurm,diffusion]'
	# EK-FAC: kronfluence without its torchvision requirement (which would pull a CUDA torch)
	$(BIN)/pip install --no-deps 'kronfluence>=1.0' einconv einops opt-einsum

setup: $(BIN)/snakemake

run: setup
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --cores $(CORES)
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --report results/default/report.html

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/snakemake --lint
	for f in configs/*.yaml; do $(BIN)/snakemake -n -q --configfile $$f || exit 1; done

bench: setup
	$(BIN)/python benchmarks/bench_gradients.py
	$(BIN)/python benchmarks/bench_methods.py

clean:
	rm -rf results .snakemake
