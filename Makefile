# Two commands for a newcomer: `make run` (set up + default workflow) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
TORCH_INDEX ?=
# extras of the CPU install (+ ekfac, installed without dependencies below); envs/*.yaml list the same
CPU_EXTRAS := test,slurm,diffusion,reviews

.PHONY: setup run test report lint dry-run bench clean

$(BIN)/snakemake:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# CPU-only torch on a machine without a GPU: make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
	$(BIN)/pip install torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -e '.[$(CPU_EXTRAS)]'
	# the ekfac extra: kronfluence without its torchvision requirement (which would pull a CUDA torch)
	$(BIN)/pip install --no-deps 'kronfluence>=1.0' einconv einops opt-einsum

setup: $(BIN)/snakemake

run: setup
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --cores $(CORES)
	HF_HUB_OFFLINE=1 $(BIN)/snakemake --report results/default/report.html
	$(BIN)/python -m inflbench summary results/default   # = the `inflbench summary` command

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/snakemake --lint
	# every profile, an overlay with the profiles its usage line names (inflbench.config.profile_configfiles)
	for f in $$(ls configs/*.yaml | grep -v '\.block\.yaml$$'); do \
	  $(BIN)/snakemake -n -q --configfile $$($(BIN)/python -c 'import sys; from inflbench.config import profile_configfiles as p; print(*p(sys.argv[1]))' $$f) || exit 1; done

bench: setup
	$(BIN)/python benchmarks/bench_gradients.py
	$(BIN)/python benchmarks/bench_methods.py

clean:
	rm -rf results .snakemake
