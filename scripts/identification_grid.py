"""Ablation-grid driver (not a Snakemake script): one workflow run per setting of a grid.

    python scripts/identification_grid.py configs/ablation-rank.yaml [--grid ablation-rank] [--results-dir results]
        [--cores 2] [--only r2 r8] [--no-share] [--dry-run] [extra snakemake arguments]
    python scripts/identification_grid.py configs/paper-sd-style.yaml --grid ablation-rrinf-sampling --cores 8

Validates every setting first, then writes one run per setting (<results_dir>/<run>-<setting>/), the
stacked identification tables (<results_dir>/grids/<run>.csv) and the paper layout of the studied
method (<results_dir>/grids/<run>_rrinf.csv and .png). See docs/identification.md.
"""
from pathlib import Path

from inflbench.studies.identification.grid import main

if __name__ == "__main__":
    main(workflow_dir=Path(__file__).resolve().parents[1])  # the repository: Snakefile, config.yaml
