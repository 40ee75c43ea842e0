"""Decoder LLMs as sequence classifiers (layer-choice paper: Llama-3.2, Qwen-2.5, Mistral), offline as tiny
random-initialised models built from their architectures' configs."""

import pandas as pd
import pytest
import torch

from inflbench.config import validate_config
from inflbench.errors import ConfigError
from inflbench.gradients import per_sample_gradients, trainable_blocks
from inflbench.models import get_family, iterate_batches

FRAME = pd.DataFrame({"text_a": ["a fine film", "dull and far too long, sadly", "great", "bad plot"],
                      "text_b": [None] * 4, "label": [1, 0, 1, 0]})


def _model_cfg(arch: str, **extra) -> dict:
    return {"family": "sequence_classification", "name_or_path": f"tiny:{arch}", "max_length": 16,
            "lora": {"r": 2, "alpha": 2, "dropout": 0.0, "target_modules": ["auto"], **extra}, "options": {}}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "mistral"])
def test_tiny_decoder_classifies_the_last_real_token(arch):
    family = get_family(_model_cfg(arch), num_labels=2)
    model = family.build(seed=0).eval()
    assert model.config.model_type == arch and model.config.pad_token_id is not None
    blocks = trainable_blocks(model)
    assert any(b.endswith("q_proj.lora_A") for b in blocks) and any(b.endswith("v_proj.lora_B") for b in blocks)
    assert any(b.endswith("score") for b in blocks)  # the head is trainable, as for encoders
    batch = family.encode(FRAME)
    assert "token_type_ids" not in batch and batch["input_ids"].shape == (4, 16)
    with torch.no_grad():
        padded = family._logits(model, batch)
        alone = family._logits(model, family.encode(FRAME.iloc[[2]]))  # shorter: more padding
    torch.testing.assert_close(padded[2:3], alone, rtol=1e-5, atol=1e-6)  # padding does not move the logits
    grads = per_sample_gradients(model, iterate_batches(batch, 2), family.per_sample_loss, 1)
    assert set(grads) == set(blocks) and all(torch.isfinite(g).all() for g in grads.values())


def test_rslora_scales_by_sqrt_rank():
    plain = get_family(_model_cfg("llama", r=4, alpha=8), num_labels=2).build(0)
    rs = get_family(_model_cfg("llama", r=4, alpha=8, rslora=True), num_labels=2).build(0)
    scale = [m.scaling["default"] for m in plain.modules() if isinstance(getattr(m, "scaling", None), dict)]
    rs_scale = [m.scaling["default"] for m in rs.modules() if isinstance(getattr(m, "scaling", None), dict)]
    assert scale[0] == pytest.approx(2.0) and rs_scale[0] == pytest.approx(4.0)  # alpha/r vs alpha/sqrt(r)


def test_decoder_config_errors():
    cfg = {"model": _model_cfg("gpt9"), "methods": {"tracin": {}}, "layers": {"enabled": False},
           "synthetic": {"enabled": False}}
    with pytest.raises(ConfigError, match=r"config key 'model.name_or_path': unknown tiny architecture 'gpt9'"):
        validate_config(cfg)
    cfg["model"] = {**_model_cfg("llama"), "options": {"torch_dtype": "int8"}}
    with pytest.raises(ConfigError, match=r"model.options.torch_dtype"):
        validate_config(cfg)
