"""Ablation-grid driver (not a Snakemake script): one workflow run per setting of configs/ablation-*.yaml.

    python scripts/identification_grid.py configs/ablation-rank.yaml [--base configs/paper-sd-style.yaml]
        [--results-dir results] [--cores 2] [--only r2 r8] [--dry-run] [extra snakemake arguments]

Writes one run per setting (<results_dir>/<grid>-<setting>/) and the stacked identification tables
to <results_dir>/grids/<grid>.csv. See docs/identification.md.
"""
from inflbench.identification import main

if __name__ == "__main__":
    main()
