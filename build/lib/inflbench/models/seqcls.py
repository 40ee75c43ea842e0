"""Sequence classification (GLUE-style): ``AutoModelForSequenceClassification`` + LoRA + trainable head."""

from __future__ import annotations

import warnings

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from inflbench.errors import ConfigError
from inflbench.models.base import Batch, ModelFamily, quiet_pretrained, resolve_pretrained


class SequenceClassification(ModelFamily):
    name = "sequence_classification"

    def _tokenizer(self):
        from transformers import AutoTokenizer

        if not hasattr(self, "_tok"):
            self._tok = AutoTokenizer.from_pretrained(resolve_pretrained(self.cfg["name_or_path"]))
        return self._tok

    def build(self, seed: int) -> nn.Module:
        from peft import LoraConfig, TaskType, get_peft_model
        from transformers import AutoModelForSequenceClassification

        torch.manual_seed(seed)  # same LoRA/head initialisation for every (re)training from this seed
        with quiet_pretrained(self.cfg["name_or_path"]):
            base = AutoModelForSequenceClassification.from_pretrained(
                resolve_pretrained(self.cfg["name_or_path"]), num_labels=self.num_labels)
        lora = self.cfg["lora"]
        targets = list(lora["target_modules"])
        names = [n for n, _ in base.named_modules()]
        if not any(n.split(".")[-1] in targets for n in names):
            raise ConfigError("model.lora.target_modules", f"{targets} match no module of {self.cfg['name_or_path']}")
        peft_cfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=lora["r"], lora_alpha=lora["alpha"],
                              lora_dropout=lora.get("dropout", 0.0), target_modules=targets)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers deprecations raised inside peft
            return get_peft_model(base, peft_cfg)

    def encode(self, frame: pd.DataFrame) -> Batch:
        tok = self._tokenizer()
        pairs = frame["text_b"].notna().any()
        enc = tok(list(frame["text_a"]), list(frame["text_b"]) if pairs else None, truncation=True,
                  max_length=self.cfg.get("max_length", 128), padding="max_length", return_tensors="pt")
        data = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "labels": torch.tensor(frame["label"].to_numpy(), dtype=torch.long)}
        if "token_type_ids" in enc:
            data["token_type_ids"] = enc["token_type_ids"]
        return data

    @staticmethod
    def _trim(batch: Batch) -> Batch:
        """Drop padding columns that no sample in the batch uses (fewer FLOPs, same result)."""
        width = int(batch["attention_mask"].sum(1).max())
        return {k: (v[:, :width] if v.dim() == 2 else v) for k, v in batch.items()}

    def _logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        batch = self._trim(batch)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self._logits(model, batch), batch["labels"], reduction="none")

    def predict(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return self._logits(model, batch).argmax(-1)
