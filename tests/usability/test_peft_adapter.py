"""The fine-tuned adapter in PEFT's format: ``PeftModel.from_pretrained`` rebuilds the same model."""

from __future__ import annotations

import copy
import json

import torch

from common import MINILM
from inflbench.artifacts import save_peft_adapter
from inflbench.models import resolve_pretrained


def test_peft_folder_loads_with_peft_and_gives_the_same_logits(minilm, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    family, shared, encoded = minilm
    model = copy.deepcopy(shared)  # the fixture is shared by other tests
    with torch.no_grad():
        for name, param in model.named_parameters():  # a head unlike a fresh one, so the test can fail
            if "classifier" in name and param.requires_grad:
                param.add_(0.3)
    save_peft_adapter(tmp_path / "peft", model, {"seed": 0})
    assert (tmp_path / "peft" / "adapter_config.json").is_file()
    assert json.loads((tmp_path / "peft" / "inflbench.json").read_text())["provenance"] == {"seed": 0}
    torch.manual_seed(123)  # a different head initialisation: the loaded values must come from the folder
    base = AutoModelForSequenceClassification.from_pretrained(resolve_pretrained(MINILM["name_or_path"]), num_labels=2)
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "peft")).eval()
    batch = {k: v[:4] for k, v in encoded["train"].items() if k != "labels"}
    with torch.no_grad():
        expected, got = model(**batch).logits, loaded(**batch).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
