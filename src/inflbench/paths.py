"""Where every output of every study lives, built from the run config in one place.

Templates keep Snakemake wildcards (``{task}``, ``{method}`` ...) when those are passed through as
``"{task}"``; the Snakefile, the studies and the tests all use this module, so names never drift apart.
Every job of every study logs to ``logs/<stage>/<name>.log``.
"""

from __future__ import annotations

from pathlib import Path

TEMPLATES = {
    "resolved_config": "config.yaml",
    "split": "{task}/data/{split}.csv",
    # pretrained tiny decoder (model.options.pretrain), one per run: shared by every seed, task and grid setting
    "pretrained": "pretrain/model.safetensors",
    "pretrain_curve": "pretrain/curve.csv",
    "sizes": "{task}/data/sizes.csv",
    "adapter": "{task}/model/adapter.safetensors",
    "curve": "{task}/model/training_curve.csv",
    "val_predictions": "{task}/model/val_predictions.csv",
    "peft_adapter": "{task}/model/peft",
    "gradients": "{task}/gradients/{split}.safetensors",
    "gradient_index": "{task}/gradients/{split}.json",
    "block_stats": "{task}/gradients/train_block_stats.safetensors",
    "gradient_chunk": "{task}/gradients/chunks/{split}_{chunk}.safetensors",
    "gradient_chunk_index": "{task}/gradients/chunks/{split}_{chunk}.json",
    "scores": "{task}/scores/{method}.safetensors",
    "score_shard": "{task}/scores/shards/{method}_{shard}.safetensors",
    "detection": "{task}/metrics/detection_{method}.csv",
    "detection_summary": "{task}/metrics/summary_{method}.json",
    "detection_table": "tables/detection.csv",
    "leaderboard": "tables/leaderboard.csv",
    "topk": "{task}/topk/{method}.csv",
    "detection_figure": "figures/detection_{task}.png",
    # over the replicate seeds of a multi-seed run (at the run root)
    "seeds_table": "tables/{study}_seeds_{table}.csv",
    "seeds_figure": "figures/{study}_seeds.png",
    # influential-data identification
    "identification": "{task}/metrics/identification_{method}.csv",
    "identification_summary": "{task}/metrics/identification_summary_{method}.json",
    "identification_table": "tables/identification.csv",
    "identification_figure": "figures/identification_{task}.png",
    # ablation grid (over the settings of config `grid`, and the replicate seeds)
    "grid_table": "tables/grid_{grid}.csv",
    "grid_paper_table": "tables/grid_{grid}_{method}.csv",
    "grid_figure": "figures/grid_{grid}_{method}.png",
    # layer-choice study and retraining evaluations
    "layer_scores": "{task}/layers/scores/{method}.csv",
    "layer_ndr": "{task}/layers/ndr/{method}.csv",
    "layer_ndr_curve": "{task}/layers/ndr/{method}_curve.csv",
    "layer_deciles": "{task}/layers/ndr/{method}_deciles.csv",
    "layer_ndr_blocks": "{task}/layers/ndr/{method}_blocks.csv",
    "layer_cancellation": "{task}/layers/cancellation.csv",
    "layer_mask": "{task}/layers/masks/{selector}/seed{seed}.csv",
    "layer_retrain": "{task}/layers/retrain/{selector}/seed{seed}.json",
    "layer_table": "tables/layers_{table}.csv",
    "layer_figure": "figures/layers_{figure}.png",
    # synthetic inverse-HVP study (no model): one cell = (distribution, d, N, seed)
    "synthetic_cell": "synthetic/cells/{distribution}/d{d}_n{n}_seed{seed}.csv",
    "synthetic_cell_meta": "synthetic/cells/{distribution}/d{d}_n{n}_seed{seed}.json",
    "synthetic_convergence": "synthetic/convergence.csv",
    "synthetic_cells": "synthetic/cells.csv",
    "synthetic_figure": "synthetic/figures/{figure}.png",
    "synthetic_table": "synthetic/tables/{table}.{ext}",
    "synthetic_summary": "synthetic/summary.md",
    "log": "logs/{stage}/{name}.log",
}


class Layout:
    """Output paths of one run: ``<results_dir>/<run>/<template>``."""

    def __init__(self, results_dir: str | Path, run: str):
        self.root = Path(results_dir) / run

    @classmethod
    def from_config(cls, cfg: dict) -> "Layout":
        return cls(cfg["results_dir"], cfg["run"])

    def replicate(self, seed: int | str) -> "Layout":
        """The layout of one replicate seed of a multi-seed run: ``<run>/seed<seed>/`` (``seed`` may be a
        wildcard such as ``"{rep}"``)."""
        return Layout(self.root, f"seed{seed}")

    def grid_setting(self, grid: str, setting: str) -> "Layout":
        """The layout of one setting of an ablation grid: ``<run>[/seed<N>]/grids/<grid>/<setting>/`` (the
        outputs the setting does not share with the run)."""
        return Layout(self.root / "grids" / grid, setting)

    def __call__(self, kind: str, **wildcards: str) -> str:
        return str(self.root / TEMPLATES[kind].format(**wildcards))

    def __getattr__(self, kind: str):
        if kind in TEMPLATES:
            return lambda **wildcards: self(kind, **wildcards)
        raise AttributeError(kind)


def html_of(path: str | Path) -> str:
    """The report's HTML rendering of a table or summary (``x.csv`` / ``x.md`` -> ``x.html``)."""
    return str(Path(path).with_suffix(".html"))


def sidecar(path: str | Path) -> Path:
    """The JSON file recording the config that produced ``path`` (``x.csv`` -> ``x.config.json``)."""
    path = Path(path)
    return path.with_name(path.stem + ".config.json")
