"""Reading and writing every artifact kind of the workflow, with its provenance: one reader and one writer each.

Kinds: split tables (CSV), result tables (CSV + ``.config.json`` sidecar), adapters, per-sample gradients
(safetensors + JSON index) and influence scores (safetensors, one ``(n_train, n_target)`` entry per block
plus ``total``; the metadata travels inside the file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from inflbench.paths import sidecar

SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------- provenance and tables


def write_provenance(path: str | Path, provenance: dict) -> None:
    sidecar(path).write_text(json.dumps(provenance, indent=1, sort_keys=True, default=str))


def write_table(frame: pd.DataFrame, path: str | Path, provenance: dict) -> None:
    """CSV table plus its config sidecar."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    write_provenance(path, provenance)


def write_json(data: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1))


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def as_plain(obj) -> dict:
    """Snakemake's Namedlist / params -> plain dict (recursively JSON-able)."""
    return json.loads(json.dumps(dict(obj), default=str))


# ---------------------------------------------------------------- data splits


def read_split(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path, keep_default_na=False, na_values={"text_b": [""]})
    if "text_b" in frame:
        frame["text_b"] = frame["text_b"].astype(object).where(frame["text_b"].notna(), None)
    return frame


def read_splits(paths: dict[str, str]) -> dict[str, pd.DataFrame]:
    """The train/val/test tables of a task from a mapping that holds (at least) their paths."""
    return {s: read_split(paths[s]) for s in SPLITS if s in paths}


def split_paths(paths: dict) -> dict[str, str]:
    """The train/val/test entries of a rule's inputs."""
    return {s: paths[s] for s in SPLITS}


# ---------------------------------------------------------------- adapters


def save_adapter(path: str | Path, state: dict, provenance: dict, best_epoch: int) -> None:
    from safetensors.torch import save_file

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path),
              metadata={"inflbench": json.dumps(provenance), "best_epoch": str(int(best_epoch))})


def save_peft_adapter(folder: str | Path, model, provenance: dict) -> None:
    """The fine-tuned adapter in PEFT's own format (``PeftModel.from_pretrained(base, folder)`` loads it; the
    task head travels as a saved module) plus ``inflbench.json`` with our provenance. Models that are not
    PEFT models get the provenance only."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(str(folder))
    write_json({"provenance": provenance, "peft": hasattr(model, "peft_config"),
                "load": "PeftModel.from_pretrained(<base model with the same head size>, this folder)"},
               folder / "inflbench.json")


def load_adapter(path: str | Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


# ---------------------------------------------------------------- per-sample gradients


def gradient_index_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def save_gradients(path: str | Path, grads: dict, sample_ids: list[int], meta: dict) -> None:
    """Safetensors file (one tensor per block) + JSON index beside it (blocks, shapes, ids, provenance)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: g.contiguous() for name, g in grads.items()}
    save_file(tensors, str(path), metadata={"inflbench": json.dumps({"fingerprint": meta.get("fingerprint", "")})})
    index = {
        "blocks": {name: {"shape": list(g.shape[1:]), "dtype": str(g.dtype).replace("torch.", "")}
                   for name, g in tensors.items()},
        "n": len(sample_ids),
        "sample_ids": [int(i) for i in sample_ids],
        **meta,
    }
    gradient_index_path(path).write_text(json.dumps(index, indent=1))


def load_gradients(path: str | Path, blocks: Iterable[str] | None = None) -> dict:
    """Block name -> per-sample gradients (torch); ``blocks`` loads only those (lazily, from the file)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        names = list(handle.keys()) if blocks is None else list(blocks)
        return {name: handle.get_tensor(name) for name in names}


# ---------------------------------------------------------------- influence scores


def save_scores(path: str | Path, scores: dict, meta: dict) -> None:
    """Per-block (n_train, n_target) scores plus ``total``; the metadata travels inside the file."""
    import torch
    from safetensors.torch import save_file

    scores = {k: v.detach().to(torch.float64).contiguous() for k, v in scores.items()}
    if "total" not in scores:
        scores["total"] = torch.stack(list(scores.values())).sum(0)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(scores, str(path), metadata={"inflbench": json.dumps(meta, default=str)})
    write_provenance(path, meta)


def read_scores(path: str | Path, blocks: Iterable[str] | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """(block -> (n_train, n_target) float64 array, metadata) of a score file; ``blocks`` reads only those
    (e.g. ``["total"]``). The only reader of score files; needs no torch."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        names = list(handle.keys()) if blocks is None else list(blocks)
        arrays = {name: handle.get_tensor(name) for name in names}
        meta = json.loads((handle.metadata() or {}).get("inflbench", "{}"))
    return arrays, meta


def read_scores_meta(path: str | Path) -> dict:
    return read_scores(path, blocks=())[1]


def train_sample_scores(path: str | Path) -> np.ndarray:
    """Score per training sample: mean over target samples of the total (n_train, n_target) influence."""
    import torch

    total = read_scores(path, blocks=["total"])[0]["total"]
    return torch.from_numpy(total).mean(1).numpy()  # torch's reduction, as the scores were always averaged
