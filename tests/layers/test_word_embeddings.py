"""Seed 003 word-embedding TracIn variants against an explicit pair loop; WE group config checks."""

import pytest
import torch

from inflbench import methods
from inflbench.config import validate_config
from inflbench.errors import ConfigError
from inflbench.methods import compute_influence


def _ref(tr, te, top_k):
    """score(i, j) = -sum over shared non-zero rows (optionally the top_k by ||tr[i, r]||, ties to lower r)."""
    n, m, rows = tr.shape[0], te.shape[0], tr.shape[1]
    out = torch.zeros(n, m, dtype=torch.float64)
    for i in range(n):
        for j in range(m):
            shared = [r for r in range(rows) if tr[i, r].abs().sum() > 0 and te[j, r].abs().sum() > 0]
            if top_k is not None:
                shared = sorted(shared, key=lambda r: (-float(tr[i, r].norm()), r))[:top_k]
            out[i, j] = -sum(float(tr[i, r] @ te[j, r]) for r in shared)
    return out


def _sparse_tokens(n, rows, cols, per_sample, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, rows, cols, generator=g, dtype=torch.float64)
    mask = torch.zeros(n, rows, dtype=torch.bool)
    for i in range(n):
        mask[i, torch.randperm(rows, generator=g)[:per_sample]] = True
    return x * mask[..., None]


@pytest.mark.parametrize("name,top_k", [("tracin_we", None), ("tracin_we_top10", 10), ("tracin_we", 3),
                                        ("tracin_we_top10", 1)])
def test_tracin_we_matches_pair_loop(name, top_k):
    tr = {"we": _sparse_tokens(7, 30, 4, 14, 0)}
    te = {"we": _sparse_tokens(5, 30, 4, 12, 1)}
    params = {} if top_k == methods.get(name).defaults()["top_k"] else {"top_k": top_k}
    res = compute_influence(name, tr, te, **params)
    torch.testing.assert_close(res["we"], _ref(tr["we"], te["we"], top_k), rtol=1e-12, atol=1e-12)


def test_top10_differs_from_all_shared_and_all_shared_equals_tracin():
    tr = {"we": _sparse_tokens(6, 40, 3, 25, 2)}  # ~15 shared tokens per pair: top-10 drops some
    te = {"we": _sparse_tokens(4, 40, 3, 25, 3)}
    full = compute_influence("tracin_we", tr, te)["we"]
    torch.testing.assert_close(full, compute_influence("tracin", tr, te)["we"])
    top = compute_influence("tracin_we_top10", tr, te)["we"]
    assert float((top - full).abs().max()) > 1e-3


def test_hand_computed_case():
    tr = {"b": torch.tensor([[[3.0], [1.0], [2.0]]], dtype=torch.float64)}  # 1 sample, 3 one-element rows
    te = {"b": torch.tensor([[[1.0], [1.0], [0.0]]], dtype=torch.float64)}  # row 2 absent
    assert float(compute_influence("tracin_we", tr, te, top_k=1)["b"]) == -3.0  # row 0 (largest ||g||)
    assert float(compute_influence("tracin_we", tr, te)["b"]) == -4.0  # rows 0 and 1
    assert float(compute_influence("tracin_we_top10", tr, te)["b"]) == -4.0


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_bad_top_k(bad):
    with pytest.raises(ValueError, match="top_k"):
        methods.make_params("tracin_we", top_k=bad)


def _cfg(**over):
    import copy

    import yaml

    from common import ROOT

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg.pop("layers", None)
    for dotted, value in over.items():
        node = cfg
        keys = dotted.split(".")
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = copy.deepcopy(value)
    return cfg


LAYERS = {"enabled": True, "methods": ["tracin"], "groups": {"WE": ["word_embeddings"], "CL": ["^classifier"]}}


def test_we_group_needs_the_gradient_switch():
    with pytest.raises(ConfigError, match=r"layers\.groups\.WE.*gradients\.word_embeddings: true"):
        validate_config(_cfg(layers=LAYERS))
    cfg = validate_config(_cfg(layers=LAYERS, **{"gradients.word_embeddings": True}))
    assert cfg["gradients"]["word_embeddings"] is True


def test_word_embeddings_only_for_sequence_classification():
    from inflbench.studies.layer_choice import check_word_embeddings

    with pytest.raises(ConfigError, match=r"gradients\.word_embeddings"):
        check_word_embeddings({"gradients": {"word_embeddings": True}, "model": {"family": "diffusion_unet"}})
    check_word_embeddings({"gradients": {"word_embeddings": False}, "model": {"family": "diffusion_unet"}})
