"""Causal-LM and diffusion families: shapes, exact batched per-sample gradients, masking, determinism."""

import pytest
import torch

from idtools import LLAMA, UNET, data_cfg, max_rel_diff, needs_diffusers, perturb_lora, profile
from inflbench.config import validate_config
from inflbench.data import prepare_splits
from inflbench.errors import ConfigError
from inflbench.gradients import per_sample_gradients, per_sample_gradients_loop
from inflbench.models import get_family, iterate_batches

TOL = 1e-5


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    frame = prepare_splits(data_cfg("lm_generated", "math_reasoning", (8, 4, 4)), "math_reasoning", seed=0)["train"]
    family = get_family(LLAMA)
    model = perturb_lora(family.build(seed=0)).eval()
    return family, model, frame, family.encode(frame)


@pytest.fixture(scope="module")
def unet():
    needs_diffusers()
    frame = prepare_splits(data_cfg("digits", "digits", (10, 10, 10)), "digits", seed=0)["train"]
    family = get_family(UNET)
    model = perturb_lora(family.build(seed=0)).eval()
    return family, model, frame, family.encode(frame)


# --------------------------------------------------------------------------- causal LM

def test_lm_build_encode_shapes(lm):
    family, model, frame, data = lm
    n = len(frame)
    assert {k: v.shape[0] for k, v in data.items()} == dict.fromkeys(data, n)
    assert data["labels"].tolist() == frame["label"].tolist()
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in k for k in trainable)
    assert {k.split(".")[-3] for k in trainable} == {"lora_A", "lora_B"}
    assert not any("lm_head" in k or "embed" in k for k in trainable)
    losses = family.per_sample_loss(model, data)
    assert losses.shape == (n,) and torch.isfinite(losses).all()
    # the target of each masked position is the next token, which is an answer token
    rows, cols = data["loss_mask"].nonzero(as_tuple=True)
    assert torch.equal(data["target_ids"][rows, cols], data["input_ids"][rows, cols + 1])
    tok = family.tokenizer()
    first = data["input_ids"][0, 1:][data["loss_mask"][0, :-1]]
    assert tok.decode(first[:-1]).replace(" ", "") == frame["answer"].iloc[0].replace(" ", "")
    assert int(first[-1]) == tok.sep_token_id  # the answer is closed by eos (WordPiece: [SEP])


def test_lm_batched_gradients_equal_loop(lm):
    family, model, frame, data = lm
    batched = per_sample_gradients(model, iterate_batches(data, 3), family.per_sample_loss)
    loop = per_sample_gradients_loop(model, iterate_batches(data, 1), family.per_sample_loss)
    assert len(batched) == 2 * 2 * 2  # 2 layers x (q_proj, v_proj) x (A, B)
    assert batched["model.layers.0.self_attn.q_proj.lora_A"].shape == (len(frame), 4, 64)
    assert max_rel_diff(batched, loop) < TOL


def test_lm_loss_counts_answer_tokens_only(lm):
    family, model, _, data = lm
    base = family.per_sample_loss(model, data).detach()
    prompt_pos = int((~data["loss_mask"][0]).nonzero()[1])  # a position predicting a prompt token
    answer_pos = int(data["loss_mask"][0].nonzero()[0])
    for pos, changes in ((prompt_pos, False), (answer_pos, True)):
        edited = {k: v.clone() for k, v in data.items()}
        edited["target_ids"][0, pos] = (int(data["input_ids"][0, pos + 1]) + 7) % 1000 + 1000
        losses = family.per_sample_loss(model, edited).detach()
        assert torch.equal(losses[1:], base[1:])
        assert (losses[0] != base[0]) == changes
    # by hand: the mean cross-entropy of the answer positions of sample 0
    logits = model(input_ids=data["input_ids"][:1], attention_mask=data["attention_mask"][:1]).logits[0]
    mask = data["loss_mask"][0]
    ce = torch.nn.functional.cross_entropy(logits[mask], data["target_ids"][0][mask])
    torch.testing.assert_close(ce, base[0], rtol=1e-5, atol=1e-6)


def test_lm_truncation_keeps_the_answer():
    family = get_family({**LLAMA, "max_length": 12})
    frame = prepare_splits(data_cfg("lm_generated", "math_reasoning", (4, 4, 4)), "math_reasoning", seed=0)["train"]
    data = family.encode(frame)
    assert data["input_ids"].shape[1] <= 12
    assert data["loss_mask"].sum(1).min() >= 1


def test_lm_4bit_load_path(monkeypatch):
    """The paper profile's bitsandbytes path (GPU only), with the hub download and CUDA faked: NF4, double
    quantisation, bfloat16 compute, the whole model on the current device, k-bit preparation, LoRA on q/v."""
    import peft
    import transformers

    from inflbench.models import causal_lm

    config = get_family(LLAMA)._tiny_config()
    calls = {}

    def from_pretrained(name, **kwargs):
        calls.update(name=name, kwargs=kwargs)
        return transformers.AutoModelForCausalLM.from_config(config)

    def prepare(model, use_gradient_checkpointing):
        calls["checkpointing"] = use_gradient_checkpointing
        return model

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", prepare)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    cfg = validate_config(profile("paper-svamp-llama.yaml"), planning_only=True)["model"]
    family = get_family(cfg)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="model.options.load_in_4bit.*CUDA"):
        family.build(seed=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(causal_lm, "bitsandbytes_available", lambda: False)
    with pytest.raises(ConfigError, match=r"model.options.load_in_4bit.*inflbench\[quant\]"):
        family.build(seed=0)
    monkeypatch.setattr(causal_lm, "bitsandbytes_available", lambda: True)
    model = family.build(seed=0)
    quant, kwargs = calls["kwargs"]["quantization_config"], calls["kwargs"]
    assert calls["name"] == "meta-llama/Llama-2-13b-chat-hf"
    assert quant.load_in_4bit and not quant.load_in_8bit and quant.bnb_4bit_quant_type == "nf4"
    assert quant.bnb_4bit_use_double_quant and quant.bnb_4bit_compute_dtype == torch.bfloat16
    assert kwargs["device_map"] == {"": 0} and causal_lm.dtype_kwarg(torch.bfloat16).items() <= kwargs.items()
    assert calls["checkpointing"] is True
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 2 * 2 and {k.split(".")[-4] for k in trainable} == {"q_proj", "v_proj"}
    assert (cfg["lora"]["r"], cfg["lora"]["alpha"]) == (8, 32)


# --------------------------------------------------------------------------- diffusion

def test_unet_build_encode_shapes(unet):
    family, model, frame, data = unet
    n, k = len(frame), family.rows_per_sample
    assert k == 2
    assert data["latents"].shape == (n, 1, 16, 16) and data["latents"].min() >= -1 and data["latents"].max() <= 1
    assert data["noise"].shape == (n, k, 1, 16, 16) and data["timesteps"].shape == (n, k)
    assert data["text"].shape == (n, 8, 32)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    losses = family.per_sample_loss(model, data)
    assert losses.shape == (n,) and torch.isfinite(losses).all()


def test_unet_batched_gradients_equal_loop(unet):
    family, model, frame, data = unet
    sub = {key: value[:6] for key, value in data.items()}
    batched = per_sample_gradients(model, iterate_batches(sub, 4), family.per_sample_loss, family.rows_per_sample)
    loop = per_sample_gradients_loop(model, iterate_batches(sub, 1), family.per_sample_loss)
    name = "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A"
    assert batched[name].shape == (6, 2, 32)  # cross-attention key: LoRA A reads the 32-d text embedding
    assert all(name.split(".")[-2] in ("to_q", "to_k", "to_v", "0") for name in batched)
    assert max_rel_diff(batched, loop) < TOL


def test_unet_loss_is_deterministic_per_sample(unet):
    family, model, frame, data = unet
    with torch.no_grad():
        full = family.per_sample_loss(model, data)
        order = torch.tensor([7, 2, 9, 0])
        shuffled = family.per_sample_loss(model, {k: v[order] for k, v in data.items()})
        again = family.encode(frame.iloc[[9, 0]])  # re-encoded in another batch composition
        alone = family.per_sample_loss(model, again)
    torch.testing.assert_close(shuffled, full[order], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone, full[[9, 0]], rtol=1e-5, atol=1e-6)
    assert not torch.equal(data["noise"][0], data["noise"][1])  # per-sample draws differ
    shared = get_family({**UNET, "options": {**UNET["options"], "draws": "shared"}}).encode(frame.iloc[:2])
    assert torch.equal(shared["noise"][0], shared["noise"][1])


def test_unet_train_mode_draws_fresh_noise(unet):
    family, model, _, data = unet
    model.train()
    try:
        torch.manual_seed(0)
        a = family.per_sample_loss(model, data).detach()
        torch.manual_seed(1)
        b = family.per_sample_loss(model, data).detach()
    finally:
        model.eval()
    assert a.shape == (len(data["labels"]),) and not torch.equal(a, b)


# --------------------------------------------------------------------------- bad LoRA targets

@pytest.mark.parametrize("name,targets,match", [
    ("causal-lm.yaml", ["query", "value"], "'query' matches no module of the tiny Llama"),
    ("diffusion.yaml", ["to_q", "attn_x"], "'attn_x' matches no module of the tiny UNet"),
    ("diffusion.yaml", ["to_q", "conv1"], r"'conv1' matches .*conv1 \(Conv2d\)"),
])
def test_bad_lora_targets_fail_validation(name, targets, match):
    needs_diffusers(name)
    with pytest.raises(ConfigError, match=f"model.lora.target_modules.*{match}"):
        validate_config(profile(name, model={"lora": {"target_modules": targets}}))


def test_local_model_folders_are_checked_from_their_config(tmp_path):
    """Hub/local models: the LoRA targets are checked against a skeleton built from the config alone."""
    get_family(LLAMA)._tiny_config().save_pretrained(tmp_path / "llama")
    with pytest.raises(ConfigError, match=r"model.lora.target_modules.*'query' matches no module of .*llama"):
        validate_config(profile("paper-svamp-llama.yaml", model={"name_or_path": str(tmp_path / "llama"),
                                                                 "lora": {"target_modules": ["q_proj", "query"]}}),
                        planning_only=True)
    needs_diffusers()
    family = get_family(UNET)
    family._new_tiny_unet().save_config(tmp_path / "sd" / "unet")
    with pytest.raises(ConfigError, match=r"model.lora.target_modules.*'to_x' matches no module of the UNet of"):
        validate_config(profile("paper-sd-style.yaml", model={"name_or_path": str(tmp_path / "sd"),
                                                              "lora": {"target_modules": ["to_q", "to_x"]}}),
                        planning_only=True)


def test_bad_model_options():
    with pytest.raises(ConfigError, match="model.options.bogus"):
        validate_config(profile("causal-lm.yaml", model={"options": {"bogus": 1}}))
    needs_diffusers()
    with pytest.raises(ConfigError, match="model.options.noise_draws"):
        validate_config(profile("diffusion.yaml", model={"options": {"noise_draws": 0}}))
