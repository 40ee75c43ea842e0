"""Pre-run checks that keep a bad input from producing a silent wrong result.

Called before any job: config files as written (duplicate keys, empty overlays), non-finite numbers,
label-noise arithmetic, the device. Each problem raises ``InputError`` with one line naming the key or file.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import yaml

from inflbench.errors import ConfigError, InputError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML silently keeps the last)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise InputError(f"{loader.name}:{key_node.start_mark.line + 1}: duplicate key {key!r} "
                             f"(first given on line {seen[key] + 1}); YAML would keep only the last one")
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_strict(path: str | Path) -> dict:
    """A config file as a mapping; every problem is one line naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: config file does not exist") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    loader = _StrictLoader(text)
    loader.name = str(path)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: a config file must be a mapping of keys, not a {type(data).__name__}")
    return data


def check_config_files(files: list[str | Path]) -> None:
    """Config files in merge order (base first): no duplicate keys, and no overlay whose empty mapping
    would be deep-merged away (``methods: {}`` keeps every base method, which is not what it says)."""
    merged: dict = {}
    for i, path in enumerate(files):
        data = load_yaml_strict(path)
        if i:
            _refuse_empty_overlay(data, merged, path, [])
        merged = merge_overlay(merged, data)


def _refuse_empty_overlay(overlay: dict, base: dict, path, where: list) -> None:
    for key, value in overlay.items():
        old = base.get(key) if isinstance(base, dict) else None
        if value == {} and isinstance(old, dict) and old:
            dotted = ".".join(map(str, where + [key]))
            raise InputError(f"{path}: config key '{dotted}' is an empty mapping, but overlays are merged into the "
                             f"earlier config, so its entries {sorted(old)[:4]} would still apply; list the "
                             "entries you want instead")
        if isinstance(value, dict) and isinstance(old, dict):
            _refuse_empty_overlay(value, old, path, where + [key])


def check_finite(value, where: str = "") -> None:
    """Every float of a (raw) config is finite: NaN passes every schema bound, inf breaks every job."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(where or "<root>", f"{value} is not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite(v, f"{where}[{i}]")


def check_label_noise(cfg: dict) -> None:
    """A positive noise fraction must flip at least one training label (flips = round(fraction * n_train))."""
    frac, n = cfg["data"]["noise_fraction"], cfg["data"]["sizes"]["train"]
    if frac > 0 and int(round(frac * n)) < 1:
        raise ConfigError("data.noise_fraction", f"{frac} of {n} training samples flips round({frac * n:.3g}) = 0 "
                          "labels; raise it to at least 1/n_train or set 0")


def check_device(cfg: dict, planning_only: bool = False) -> None:
    """``device: cuda`` (or ``scores.device: cuda``) needs a CUDA build of torch here (jobs run in this
    environment)."""
    key = "device" if cfg["device"] == "cuda" else "scores.device"
    if cfg["device"] != "cuda" and (cfg.get("scores") or {}).get("device") != "cuda":
        return
    import torch

    if not torch.backends.cuda.is_built() or (not planning_only and not torch.cuda.is_available()):
        why = "torch here is a CPU-only build" if not torch.backends.cuda.is_built() else "no GPU is visible"
        if planning_only:
            print(f"inflbench: warning: config key '{key}': cuda, but {why}; the jobs need a GPU machine",
                  file=sys.stderr)
            return
        raise ConfigError(key, f"cuda, but {why}; use {key}: auto or cpu here")


def check_damping_blocks(cfg: dict) -> None:
    """A per-block damping mapping must name exactly the model's blocks (found out now, not in the job)."""
    if not any(isinstance((p or {}).get("damping"), dict) for p in cfg["methods"].values()):
        return
    from inflbench.studies.layer_choice import model_block_names

    blocks = model_block_names(cfg["model"], bool(cfg["gradients"].get("word_embeddings")))
    if blocks is None:
        return
    for name, params in cfg["methods"].items():
        damping = (params or {}).get("damping")
        if isinstance(damping, dict):
            unknown, missing = sorted(set(damping) - set(blocks)), sorted(set(blocks) - set(damping))
            if unknown or missing:
                raise ConfigError(f"methods.{name}.damping", f"must give exactly the model's {len(blocks)} blocks; "
                                  f"unknown {unknown[:3]}, {len(missing)} missing (blocks look like {blocks[0]!r})")


def dry_run_requested(argv: list[str]) -> bool:
    """Whether the Snakemake command line asks for a dry run (``-n``, ``-np``, ``--dry-run``, ``--dryrun``)."""
    return any(a in ("--dry-run", "--dryrun") or (a.startswith("-") and not a.startswith("--") and a[1:].isalpha()
                                                    and "n" in a[1:]) for a in argv[1:])


def merge_overlay(base: dict, overlay: dict) -> dict:
    """Deep merge as Snakemake merges --configfile overlays (a new dict; ``base`` is not changed)."""
    out = dict(base)
    for key, value in overlay.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge_overlay(out[key], value) if nested else value
    return out
