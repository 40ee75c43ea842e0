"""Paper-scale plumbing: streamed gradient stores, block selection, streamed and sharded score files."""

import json

import pytest
import torch

from inflbench.errors import ConfigError
from inflbench.artifacts import load_gradients, merge_gradient_stores, read_gradient_index, save_gradients
from inflbench.methods._common import sq_norms
from inflbench.gradients import per_sample_gradients, stream_gradients, trainable_blocks
from inflbench.models import iterate_batches
from inflbench.store import StoreWriter, TensorStore, select_blocks, shard_blocks

ROBERTA_HEAD = ["roberta.encoder.layer.0.attention.self.query.lora_A",
                "roberta.encoder.layer.0.attention.self.query.lora_B",
                "roberta.encoder.layer.23.attention.self.value.lora_B", "classifier.dense", "classifier.out_proj"]


def test_streamed_store_equals_in_memory_bit_for_bit(minilm, tmp_path):
    family, model, encoded = minilm
    train = encoded["train"]
    n = len(train["labels"])
    ids = list(range(100, 100 + n))
    memory = per_sample_gradients(model, iterate_batches(train, 10), family.per_sample_loss)
    save_gradients(tmp_path / "mem.safetensors", memory, ids, {"split": "train"})
    stream_gradients(tmp_path / "stream.safetensors", model, iterate_batches(train, 10), family.per_sample_loss,
                     ids, {"split": "train"})
    a, b = load_gradients(tmp_path / "mem.safetensors"), load_gradients(tmp_path / "stream.safetensors")
    assert list(a) == list(b) == list(memory)  # file order = model order
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], memory[k]) for k in a)
    assert read_gradient_index(tmp_path / "stream.safetensors")["sample_ids"] == ids
    # row ranges of one block come straight from the file
    store = TensorStore(tmp_path / "stream.safetensors")
    k = "bert.encoder.layer.2.attention.self.value.lora_B"
    assert torch.equal(store.read(k, 5, 9), memory[k][5:9])
    # sample-chunk stores (same batches) merge into the same store
    parts = []
    for i, (lo, hi) in enumerate([(0, 10), (10, 20), (20, n)]):
        chunk = {key: v[lo:hi] for key, v in train.items()}
        parts.append(tmp_path / f"part{i}.safetensors")
        stream_gradients(parts[-1], model, iterate_batches(chunk, 10), family.per_sample_loss, ids[lo:hi], {})
    merge_gradient_stores(parts, tmp_path / "merged.safetensors", max_bytes=1000)  # forces several row chunks
    c = load_gradients(tmp_path / "merged.safetensors")
    assert all(torch.equal(c[k], memory[k]) for k in memory)
    assert read_gradient_index(tmp_path / "merged.safetensors")["sample_ids"] == ids
    # every store carries each block's per-sample squared norms, written with the rows (micro-batch by
    # micro-batch, chunk by chunk): equal to a pass over the stored block
    for name in ("mem", "stream", "merged"):
        s = TensorStore(tmp_path / f"{name}.safetensors")
        assert s.names == list(memory)  # the norms are not blocks
        for k in memory:
            torch.testing.assert_close(s.sq_norms(k), sq_norms(memory[k]), rtol=1e-12, atol=0)
        assert torch.equal(s.sq_norms(k, 3, 7), s.sq_norms(k)[3:7])


def test_half_precision_store_and_block_subset(minilm, tmp_path):
    family, model, encoded = minilm
    train = encoded["train"]
    full = per_sample_gradients(model, iterate_batches(train, 10), family.per_sample_loss)
    keep = select_blocks(trainable_blocks(model), {"include": ["value"], "exclude": ["layer\\.5\\."]})
    assert len(keep) == 10 and all("value" in k and "layer.5." not in k for k in keep)
    path = tmp_path / "bf16.safetensors"
    stream_gradients(path, model, iterate_batches(train, 10), family.per_sample_loss,
                     list(range(len(train["labels"]))), {}, dtype=torch.bfloat16, blocks=keep)
    half = load_gradients(path)
    assert list(half) == keep and all(v.dtype == torch.bfloat16 for v in half.values())
    assert all(torch.equal(half[k], full[k].to(torch.bfloat16)) for k in keep)
    # the norms are those of the stored (rounded) values
    assert all(torch.equal(TensorStore(path).sq_norms(k), sq_norms(half[k])) for k in keep)
    assert json.loads(path.with_suffix(".json").read_text())["blocks"][keep[0]]["dtype"] == "bfloat16"


def test_block_selection_defaults_and_patterns():
    minilm = ["bert.encoder.layer.0.attention.self.query.lora_A", "bert.encoder.layer.0.attention.self.query.lora_B",
              "classifier"]
    assert select_blocks(minilm, None) == minilm
    assert select_blocks(ROBERTA_HEAD, {}) == [b for b in ROBERTA_HEAD if b != "classifier.dense"]
    assert select_blocks(ROBERTA_HEAD, {"include": ["default", "classifier\\.dense"]}) == ROBERTA_HEAD
    assert select_blocks(["model.layers.0.self_attn.q_proj.lora_A", "score"], {}) == \
        ["model.layers.0.self_attn.q_proj.lora_A", "score"]
    with pytest.raises(ConfigError, match=r"gradients.blocks.include.*'pooler' matches no block"):
        select_blocks(ROBERTA_HEAD, {"include": ["lora_", "pooler"]})
    with pytest.raises(ConfigError, match=r"gradients.blocks.exclude.*invalid regex"):
        select_blocks(ROBERTA_HEAD, {"exclude": ["("]})
    with pytest.raises(ConfigError, match=r"'gradients.blocks': selects no block"):
        select_blocks(ROBERTA_HEAD, {"exclude": ["."]})


def test_bad_block_pattern_is_a_config_error():
    import yaml

    from common import ROOT
    from inflbench.config import validate_config

    cfg = yaml.safe_load((ROOT / "config.yaml").read_text())
    cfg["gradients"]["blocks"] = {"include": ["lora_", "no_such_block"]}
    with pytest.raises(ConfigError, match=r"^config key 'gradients.blocks.include': 'no_such_block' matches no "):
        validate_config(cfg)


def test_shards_cover_blocks_once_with_balanced_sizes():
    sizes = {f"b{i}": s for i, s in enumerate([5, 1, 1, 8, 2, 2, 1, 4])}
    shards = [shard_blocks(sizes, 3, i) for i in range(3)]
    assert sum(shards, []) == list(sizes)  # contiguous, ordered, disjoint, complete
    assert max(sum(sizes[b] for b in s) for s in shards) <= 10
    assert shard_blocks(sizes, 20, 19) == [] or len(sum([shard_blocks(sizes, 20, i) for i in range(20)], [])) == 8


def test_writer_rejects_rows_that_do_not_fit_and_leaves_no_file(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match="do not fit"):
        with StoreWriter(path, {"a": ((3, 2), torch.float32)}) as w:
            w.write("a", 2, torch.zeros(2, 2))
    assert not path.exists() and not list(tmp_path.iterdir())


def _random_stores(tmp_path, n=30, m=7, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    shapes = {"l0.q.lora_A": (4, 16), "l0.q.lora_B": (16, 4), "l1.q.lora_A": (4, 16), "l1.q.lora_B": (16, 4),
              "head.big": (3, 40), "classifier": (2, 17)}
    paths = {}
    for split, rows in (("train", n), ("val", m)):
        grads = {k: torch.randn(rows, *s, generator=gen).to(dtype) for k, s in shapes.items()}
        paths[split] = tmp_path / f"{split}.safetensors"
        save_gradients(paths[split], grads, list(range(1000 * (split == "val"), 1000 * (split == "val") + rows)), {})
    return paths


@pytest.mark.parametrize("method,params", [("exact_block", {}), ("datainf", {"damping": 0.3}), ("tracin", {}),
                                           ("lissa", {})])
def test_sharded_and_grouped_scores_equal_unsharded(tmp_path, method, params):
    from inflbench.methods import compute_influence
    from inflbench.artifacts import read_score_ids
    from inflbench.scoring import merge_score_files, score_stores

    # float64 stores: the grouping changes the batch of a float32 bmm, whose rounding depends on the CPU's kernels
    paths = _random_stores(tmp_path, dtype=torch.float64)
    reference = compute_influence(method, load_gradients(paths["train"]), load_gradients(paths["val"]), **params)
    whole = tmp_path / "whole.safetensors"
    score_stores(method, params, str(paths["train"]), str(paths["val"]), str(whole), {"group_mb": 0.01})
    shards = []
    for i in range(3):
        shards.append(str(tmp_path / f"shard{i}.safetensors"))
        score_stores(method, params, str(paths["train"]), str(paths["val"]), shards[-1], {"group_mb": 0.01}, (i, 3))
    merged = tmp_path / "merged.safetensors"
    merge_score_files(shards, str(merged))
    a, b = load_gradients(whole), load_gradients(merged)
    assert list(a) == list(b) == list(load_gradients(paths["train"])) + ["total"]  # store order
    total = reference.total()
    for k in reference:
        torch.testing.assert_close(a[k], reference[k], rtol=1e-12, atol=0)
    torch.testing.assert_close(a["total"], total, rtol=1e-12, atol=1e-14)
    rel = float((b["total"] - a["total"]).abs().max() / a["total"].abs().max())
    assert rel < 1e-6 and all(torch.equal(a[k], b[k]) for k in reference)
    assert read_score_ids(str(merged)) == {"train": list(range(30)), "target": list(range(1000, 1007))}
    assert json.loads(TensorStore(merged).metadata["inflbench"])["blocks"] == len(reference)


def test_score_file_float32_blocks_float64_total_and_coupled_methods(tmp_path):
    from inflbench.methods import compute_influence
    from inflbench.scoring import score_stores, separable

    paths = _random_stores(tmp_path, dtype=torch.bfloat16)
    out = tmp_path / "s.safetensors"
    score_stores("datainf", {}, str(paths["train"]), str(paths["val"]), str(out), {"block_dtype": "float32"})
    got = load_gradients(out)
    ref = compute_influence("datainf", {k: v.float() for k, v in load_gradients(paths["train"]).items()},
                            {k: v.float() for k, v in load_gradients(paths["val"]).items()})
    assert got["total"].dtype == torch.float64 and got["classifier"].dtype == torch.float32
    torch.testing.assert_close(got["total"], ref.total(), rtol=1e-12, atol=0)  # total from the float64 blocks
    assert not separable("exact_joint") and not separable("rrinf") and separable("cosine")
    score_stores("cosine", {}, str(paths["train"]), str(paths["val"]), str(out), {"group_mb": 0.01}, (1, 2))
    cos = load_gradients(out)
    ref = compute_influence("cosine", {k: v.float() for k, v in load_gradients(paths["train"]).items()},
                            {k: v.float() for k, v in load_gradients(paths["val"]).items()})
    assert 0 < len(cos) - 1 < len(ref)  # the second of two shards; whole-model norms all the same
    for k in cos:
        if k != "total":
            torch.testing.assert_close(cos[k], ref[k], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("method", ["cosine", "datainf", "rrinf"])
def test_scoring_takes_the_stored_norms_and_falls_back_without_them(tmp_path, monkeypatch, method):
    from inflbench.methods import _common
    from inflbench.scoring import score_stores

    paths = _random_stores(tmp_path, dtype=torch.float64)
    bare = {}  # the same stores without norms (as written by other tools)
    for split, path in paths.items():
        bare[split] = tmp_path / f"bare_{split}.safetensors"
        grads = load_gradients(path)
        with StoreWriter(bare[split], {k: (v.shape, v.dtype) for k, v in grads.items()}) as w:
            for k, v in grads.items():
                w.write(k, 0, v)
        bare[split].with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    params = {"iterations": 50} if method == "rrinf" else {}
    seen = []
    real = _common.sq_norms
    monkeypatch.setattr(_common, "sq_norms", lambda x: seen.append(x.shape) or real(x))
    out = {}
    for name, p in (("stored", paths), ("bare", bare)):
        seen.clear()
        out[name] = tmp_path / f"{name}.safetensors"
        score_stores(method, params, str(p["train"]), str(p["val"]), str(out[name]), {"group_mb": 0.01})
        passes = len(seen)
        assert (passes == 0) if name == "stored" else (passes > 0)
    a, b = load_gradients(out["stored"]), load_gradients(out["bare"])
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-12, atol=1e-15)


def test_streamed_cancellation_equals_whole_array_reference(tmp_path):
    import numpy as np
    import pandas as pd

    from inflbench.studies.layer_choice import metrics as lm
    from inflbench.studies.layer_choice.stages import block_sums, stage_cancellation

    paths = _random_stores(tmp_path)
    grads = {k: v.double().numpy() for k, v in load_gradients(paths["train"]).items()}
    grads["l0.q.lora_A"][:, 0, 0] = 0.0  # a parameter with only zero gradients: C = nan
    save_gradients(paths["train"], {k: torch.from_numpy(v).float() for k, v in grads.items()}, list(range(30)), {})
    sums = block_sums(TensorStore(paths["train"]), "head.big", max_bytes=500)  # several row chunks
    np.testing.assert_allclose(sums["abs"], np.abs(grads["head.big"]).sum(0).ravel(), rtol=1e-12)
    groups = {"L0": ["^l0\\."], "all": ["."]}
    out = tmp_path / "canc.csv"
    stage_cancellation({"grads": str(paths["train"])}, {"cancellation": str(out)},
                       {"groups": groups, "extreme": 1000.0, "task": "t"})
    table = pd.read_csv(out).set_index("name")
    for b, g in grads.items():
        ref = lm.cancellation_summary(lm.cancellation(g), 1000.0)
        assert table.loc[b, "median"] == pytest.approx(ref["median"], rel=1e-10)
        assert table.loc[b, "layer_C"] == pytest.approx(lm.layer_cancellation(g), rel=1e-10)
    joint = np.concatenate([grads[b].reshape(30, -1) for b in grads if b.startswith("l0.")], axis=1)
    assert table.loc["L0", "layer_C"] == pytest.approx(lm.layer_cancellation(joint), rel=1e-10)
    assert table.loc["L0", "n_params"] == joint.shape[1] and table.loc["l0.q.lora_A", "share_inf"] == 0


def test_resources_follow_the_data():
    from inflbench import resources as res
    from inflbench.shapes import gradient_shape

    lora = {"r": 4, "alpha": 4, "dropout": 0.0, "target_modules": ["query", "value"]}
    roberta = {"family": "sequence_classification", "name_or_path": "roberta-large", "lora": lora}
    shape = gradient_shape(roberta)
    with_dense = gradient_shape(roberta, {"include": ["default", "classifier\\.dense"]})
    assert with_dense["d"] == 1_444_866 and shape["d"] == with_dense["d"] - 1024 * 1025  # counted from the config
    llama = gradient_shape({"family": "causal_lm", "name_or_path": "meta-llama/Llama-2-13b-chat-hf",
                            "lora": {"r": 8, "alpha": 32, "target_modules": ["q_proj", "v_proj"]}})
    assert llama["d"] == 40 * 2 * 8 * (5120 + 5120)
    # EK-FAC: every trainable module's two Kronecker factors (RoBERTa-large: 96 LoRA matrices + the head's two)
    assert shape["modules"] == 98 and shape["kfac_values"] == 96 * (1024**2 + 16) + 2 * 1025**2 + 1024**2 + 4
    assert shape["d_all"] == with_dense["d"]
    assert res.model_scores_mem_mb(shape, roberta, "cpu", 4500, 500, 32) - res.train_mem_mb(shape, roberta, "cpu") == \
        pytest.approx((8 * shape["kfac_values"] + 16 * 32 * shape["d_all"] + (12 * 98 + 24) * 4500 * 500) / 2**20,
                      abs=1)
    # gradients: flat in n (streamed), grows with the batch and d
    assert res.gradients_mem_mb(shape, roberta, 64) == res.gradients_mem_mb(shape, roberta, 64)
    assert res.gradients_mem_mb(with_dense, roberta, 64) - res.gradients_mem_mb(shape, roberta, 64) == \
        pytest.approx(4 * 64 * 4 * (with_dense["d"] - shape["d"]) / 2**20, abs=1)
    assert res.gradients_runtime(shape, 4000, "cpu", 8) > res.gradients_runtime(shape, 1000, "cpu", 8)
    # separable scoring is bounded by the block group; whole-model methods grow with n * d
    small, big = (res.scores_mem_mb("tracin", shape, n, 500) for n in (4500, 45000))
    assert big - small < 1.1 * 3 * 8 * 45000 * 500 / 2**20  # only the score matrices grow
    # coupled methods stream blocks: their n x n system, never the store ((n + m) d)
    whole = res.scores_mem_mb("exact_joint", shape, 4500, 500, separable=False)
    assert 16 * 4500**2 / 2**20 < whole < (4500 + 500) * shape["d"] * 4 / 2**20
    big = res.scores_mem_mb("exact_joint", shape, 9000, 500, separable=False)
    assert big - whole == pytest.approx((16 * (9000**2 - 4500**2) + 40 * 4500 * 500 + 12 * 4500 * shape["d_max"]) / 2**20, abs=3)
    assert res.scores_mem_mb("datainf", shape, 4500, 500) - res.scores_mem_mb("tracin", shape, 4500, 500) == \
        pytest.approx(2 * 8 * 4500**2 / 2**20, abs=2)  # DataInf's n x n Gram
    assert res.layers_mem_mb("cancellation", shape, 4500, 500) < 2000


def test_standalone_profile_does_not_inherit_the_default_config():
    import yaml

    from common import ROOT
    from inflbench.config import profile_config
    from inflbench.checks import merge_overlay as merge

    default = yaml.safe_load((ROOT / "config.yaml").read_text())
    paper = yaml.safe_load((ROOT / "configs" / "paper-layers.yaml").read_text())
    merged = {**default, **paper}
    assert profile_config(merged, paper) == paper and profile_config(merged, {"run": "x"}) is merged
    glue = yaml.safe_load((ROOT / "configs" / "paper-glue.yaml").read_text())
    cfg = profile_config(merge(default, glue), glue)
    assert "synthetic" not in cfg and set(cfg["methods"]) == set(yaml.safe_load(
        (ROOT / "configs" / "paper-glue.yaml").read_text())["methods"])


def test_paper_profile_dry_run_on_slurm_names_only_its_jobs_and_routes_gpu_rules(tmp_path):
    import re

    from common import ROOT, snakemake

    pytest.importorskip("snakemake_executor_plugin_slurm")
    proc = snakemake("-n", "--profile", str(ROOT / "profiles" / "slurm"), "--configfile",
                     str(ROOT / "configs" / "paper-glue.yaml"), workdir=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert "synthetic_cell" not in jobs and "layers_retrain" not in jobs  # nothing inherited from config.yaml
    import yaml

    from inflbench.methods import get, method_entry
    from inflbench.scoring import separable

    cfg = yaml.safe_load((ROOT / "configs" / "paper-glue.yaml").read_text())
    units = len(cfg["data"]["tasks"]) * len(cfg.get("seeds") or [0])  # (task, replicate) pairs
    bases = [method_entry(name, entry)[0] for name, entry in cfg["methods"].items()]
    bases = [b for b in bases if not get(b).needs_model]
    n_sep = sum(separable(b) for b in bases)
    assert n_sep and n_sep < len(bases)
    shards = cfg["scores"]["shards"]
    assert int(jobs["scores_shard"]) == units * n_sep * shards and int(jobs["scores_merge"]) == units * n_sep
    assert int(jobs["scores"]) == units * (len(bases) - n_sep)  # exact_joint, rrinf couple blocks: one job each
    assert int(jobs["block_stats"]) == units  # one per train store, on the scores device
    gpu_jobs = [line for line in proc.stdout.splitlines() if "resources:" in line and "gpu=1" in line]
    assert len(gpu_jobs) == int(jobs["finetune"]) + int(jobs["gradients"]) + int(jobs["model_scores"]) + \
        int(jobs["block_stats"]) + int(jobs["scores"]) + int(jobs["scores_shard"])
    assert all("slurm_partition=CHANGE_ME_GPU" in line for line in gpu_jobs)
    mems = {int(m) for m in re.findall(r"mem_mb=(\d+)", proc.stdout)}
    assert len(mems) > 3  # requests differ by stage and method, not one constant


def test_ablation_grid_on_slurm_sends_its_gpu_jobs_to_the_gpu_partition(tmp_path):
    """The grid's copies of the GPU rules (grid_finetune, grid_gradients, grid_block_stats, grid_scores) are
    rules of their own names: the profile must route them too."""
    import re

    from common import ROOT, snakemake

    pytest.importorskip("snakemake_executor_plugin_slurm")
    proc = snakemake("-n", "--profile", str(ROOT / "profiles" / "slurm"), "--configfile",
                     str(ROOT / "configs" / "ablation-rank.yaml"), "--config", "device=cuda", "--until", "grid",
                     workdir=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    grid_gpu = ("grid_finetune", "grid_gradients", "grid_block_stats", "grid_scores")
    assert all(int(jobs.get(r, 0)) > 0 for r in grid_gpu), jobs
    gpu_jobs = [line for line in proc.stdout.splitlines() if "resources:" in line and "gpu=1" in line]
    want = sum(int(jobs[r]) for r in ("finetune", "gradients", "block_stats", "scores", *grid_gpu))
    assert len(gpu_jobs) == want and all("slurm_partition=CHANGE_ME_GPU" in line for line in gpu_jobs)


class _CountingLazy:
    """Read-on-access store view that records the most block tensors alive at once."""

    def __init__(self, path):
        import weakref

        self.view, self.alive, self.most, self.reads = TensorStore(path).lazy(), 0, 0, 0
        read = self.view.store.read

        def counted(*args, **kw):
            t = read(*args, **kw)
            self.alive, self.reads = self.alive + 1, self.reads + 1
            self.most = max(self.most, self.alive)
            weakref.finalize(t, self._gone)
            return t

        self.view.store.read = counted

    def _gone(self):
        self.alive -= 1


@pytest.mark.parametrize("method,params", [("exact_joint", {}), ("exact_joint", {"damping": 0.05}),
                                           ("rrinf", {"iterations": 40}),
                                           ("rrinf", {"sampling": "neuron", "iterations": 200}),
                                           ("rrinf", {"sampling": "full", "iterations": 20}),
                                           ("rrinf", {"variant": "published", "sampling": "minibatch", "iterations": 20})])
def test_coupled_methods_stream_blocks_and_equal_in_memory(tmp_path, method, params):
    from inflbench.artifacts import save_block_stats
    from inflbench.methods import compute_influence
    from inflbench.methods._stats import block_stats
    from inflbench.scoring import score_stores

    paths = _random_stores(tmp_path, n=30, m=7, dtype=torch.float64)
    tr, te = load_gradients(paths["train"]), load_gradients(paths["val"])
    ref = compute_influence(method, tr, te, **params)["total"]
    lazy_tr, lazy_te = _CountingLazy(paths["train"]), _CountingLazy(paths["val"])
    got = compute_influence(method, lazy_tr.view, lazy_te.view, **params)["total"]
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)
    assert lazy_tr.reads >= len(tr) and lazy_tr.most <= 2 and lazy_te.most <= 2  # never the whole store
    save_block_stats(tmp_path / "stats.safetensors", block_stats(tr))
    out = tmp_path / "s.safetensors"
    score_stores(method, params, str(paths["train"]), str(paths["val"]), str(out), {},
                 stats_path=str(tmp_path / "stats.safetensors"))
    torch.testing.assert_close(TensorStore(out).read("total"), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_block_stats_stage_streams_gram_by_gram_and_equals_in_memory(tmp_path, dtype, monkeypatch):
    from inflbench.artifacts import load_block_stats
    from inflbench.methods import _stats
    from inflbench.stages import stage_block_stats

    gen = torch.Generator().manual_seed(3)
    # n = 50: side n over pairs of row chunks, side d over row chunks (twice), side d in one read
    shapes = {"big_n": (40, 60), "d_48": (6, 8), "big_d": (3, 7), "tiny_d": (2, 2)}
    grads = {k: torch.randn(50, *s, generator=gen).to(dtype) for k, s in shapes.items()}
    save_gradients(tmp_path / "train.safetensors", grads, list(range(50)), {})
    ref = _stats.block_stats(grads, chunk_bytes=2000)
    monkeypatch.setattr(_stats, "CHUNK_BYTES", 2000)  # several row chunks per large block
    rows = {}
    read = TensorStore.read

    def counted(self, name, start=None, stop=None, dtype=None):
        t = read(self, name, start, stop, dtype)
        rows[name] = max(rows.get(name, 0), t.shape[0])
        return t

    monkeypatch.setattr(TensorStore, "read", counted)
    stage_block_stats({"train": str(tmp_path / "train.safetensors")}, {"stats": str(tmp_path / "s.safetensors")}, {})
    assert rows["big_n"] < 50 and rows["big_d"] < 50 and rows["tiny_d"] == 50  # large blocks by row chunks
    disk = load_block_stats(tmp_path / "s.safetensors")
    assert disk.n == 50 and disk.shapes == ref.shapes
    for k in shapes:
        # same products as in memory: blocks read whole, and side-d row chunks of float32 stores
        exact = k == "tiny_d" or (dtype == torch.float32 and k != "big_n")
        for got, want in ((disk.gram(k), ref.gram(k)), (disk.train_sq[k], ref.train_sq[k])):
            assert torch.equal(got, want) if exact else torch.allclose(got, want, rtol=1e-12, atol=1e-12), k


def test_block_stats_run_their_products_on_the_scores_device(tmp_path):
    """The block_stats rule takes scores.device: row ranges read into host memory, products on the device."""
    import json

    from inflbench.methods import _stats
    from inflbench.stages import stage_block_stats

    gen = torch.Generator().manual_seed(4)
    shapes = {"big_n": (40, 60), "big_d": (3, 7), "tiny_d": (2, 2)}  # pairs of row chunks, row chunks, whole
    grads = {k: torch.randn(50, *s, generator=gen) for k, s in shapes.items()}
    save_gradients(tmp_path / "train.safetensors", grads, list(range(50)), {})
    store = TensorStore(tmp_path / "train.safetensors")
    got = {k: (G, sq) for k, G, sq in _stats.iter_store_stats(store, chunk_bytes=2000, device="meta")}
    assert set(got) == set(shapes)  # no GPU here: "meta" is the non-CPU device
    for k, (G, sq) in got.items():
        side = min(50, int(torch.tensor(shapes[k]).prod()))
        assert G.device.type == sq.device.type == "meta" and G.shape == (side, side) and sq.shape == (50,), k
    outs = {}
    for name, params in (("default", {}), ("cpu", {"device": "cpu"})):
        outs[name] = tmp_path / f"{name}.safetensors"
        stage_block_stats({"train": str(tmp_path / "train.safetensors")}, {"stats": str(outs[name])}, params)
    a, b = TensorStore(outs["default"]), TensorStore(outs["cpu"])
    assert all(torch.equal(a.read(k), b.read(k)) for k in a.names)
    assert json.loads(b.metadata["inflbench_block_stats"])["device"] == "cpu"


def test_scoring_on_a_device_reads_lazy_stores_into_host_memory(tmp_path, monkeypatch):
    """Coupled methods (rrinf, exact_joint) get lazy store views, read inside the device context."""
    import inflbench.methods as methods
    from inflbench.methods import InfluenceResult
    from inflbench.scoring import _compute

    paths = _random_stores(tmp_path, n=12, m=3)
    tr, te = TensorStore(paths["train"]).lazy(), TensorStore(paths["val"]).lazy()
    with torch.device("meta"):
        block = TensorStore(paths["train"]).read(tr.keys_[0])
    assert block.device.type == "cpu" and torch.equal(block, load_gradients(paths["train"])[tr.keys_[0]])
    seen = {}

    def fake(method, train, test, **params):
        seen.update({k: v.device.type for k, v in train.items()})
        return InfluenceResult({"total": torch.zeros(12, 3, device="cpu")}, meta={})

    monkeypatch.setattr(methods, "compute_influence", fake)
    _compute("rrinf", {}, tr, te, torch.device("meta"), None)
    assert set(seen) == set(tr.keys_) and set(seen.values()) == {"meta"}


def test_scoring_on_a_device_moves_the_shared_block_stats_there(tmp_path, monkeypatch):
    import inflbench.methods as methods
    from inflbench.methods import InfluenceResult
    from inflbench.methods._stats import block_stats
    from inflbench.scoring import _compute

    paths = _random_stores(tmp_path, n=12, m=3)
    tr, te = load_gradients(paths["train"]), load_gradients(paths["val"])
    stats, seen = block_stats(tr), {}

    def fake(method, train, test, *, block_stats=None, **params):  # stands in for the method on the device
        seen.update(train=next(iter(train.values())).device, stats=block_stats)
        return InfluenceResult({"total": torch.zeros(12, 3, device="cpu")}, meta={})

    monkeypatch.setattr(methods, "compute_influence", fake)
    _compute("exact_joint", {}, tr, te, torch.device("meta"), stats)  # no GPU here: "meta" is the non-CPU device
    got = seen["stats"]
    assert seen["train"].type == "meta" and got is not None and got.n == 12 and got.shapes == stats.shapes
    for k in tr:
        assert got.train_sq[k].device.type == "meta" and got.gram(k).device.type == "meta"
        assert got.gram(k).shape == stats.gram(k).shape
