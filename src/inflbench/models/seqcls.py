"""Sequence classification (GLUE-style): ``AutoModelForSequenceClassification`` + LoRA + trainable head.

Encoders (BERT, RoBERTa, MiniLM) and the decoder LLMs of the layer-choice paper (Llama-3.2-1B, Qwen-2.5-1.5B,
Mistral-7B; the head reads the last non-pad token, so a tokenizer without a pad token pads with eos).
``model.name_or_path`` ``tiny:<llama|qwen2|mistral>`` builds a small random-initialised decoder from its
architecture's config (offline; vocabulary of ``model.options.tokenizer``). ``model.lora.target_modules:
[auto]`` picks the architecture's attention projections. ``model.options``: ``torch_dtype`` (weights of a
hub model: float32, bfloat16, float16), ``tokenizer`` and ``tiny`` (config overrides) for tiny models.
"""

from __future__ import annotations

import functools
import logging
import warnings

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from inflbench.errors import ConfigError
from inflbench.models.base import Batch, ModelFamily, quiet_pretrained, resolve_pretrained
from inflbench.schemas import resolve_options


log = logging.getLogger("inflbench")


#: decoder architecture -> (transformers config class, LoRA targets of ``target_modules: [auto]``)
DECODERS = {"llama": ("LlamaConfig", ["q_proj", "v_proj"]), "qwen2": ("Qwen2Config", ["q_proj", "v_proj"]),
            "mistral": ("MistralConfig", ["q_proj", "v_proj"])}
ENCODER_TARGETS = ["query", "value"]
TINY_DECODER = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "max_position_embeddings": 512}


class SequenceClassification(ModelFamily):
    name = "sequence_classification"

    @functools.cached_property
    def options(self) -> dict:
        """``model.options`` with the defaults of schemas/model_options/sequence_classification.schema.yaml."""
        return resolve_options("model", self.name, self.cfg.get("options"))

    @property
    def tiny(self) -> str | None:
        """The architecture of a ``tiny:<arch>`` model, else None."""
        name = self.cfg["name_or_path"]
        return name[len("tiny:"):] if name.startswith("tiny:") else None

    def model_type(self) -> str:
        if self.tiny:
            return self.tiny
        if not hasattr(self, "_type"):
            from transformers import AutoConfig

            self._type = AutoConfig.from_pretrained(resolve_pretrained(self.cfg["name_or_path"])).model_type
        return self._type

    def check(self, cfg: dict) -> None:
        self.options  # noqa: B018 (validates model.options)
        if self.tiny is not None and self.tiny not in DECODERS:
            raise ConfigError("model.name_or_path", f"unknown tiny architecture {self.tiny!r}; choose tiny:"
                                                    f"{', tiny:'.join(DECODERS)}")
        if self.tiny is None:
            self._check_targets(cfg)

    def _check_targets(self, cfg: dict) -> None:
        """Pre-run: the LoRA targets exist, read from the model's config on the meta device (no weights)."""
        from transformers import AutoConfig, AutoModelForSequenceClassification

        from inflbench.models.causal_lm import check_lora_targets

        name = cfg["model"]["name_or_path"]
        try:
            config = AutoConfig.from_pretrained(resolve_pretrained(name), num_labels=2)
        except (OSError, ValueError) as exc:
            log.warning("cannot fetch the config of %s (%s); LoRA targets are checked when the model is built",
                        name, str(exc).splitlines()[0])
            return
        targets = list(cfg["model"]["lora"]["target_modules"])
        if targets == ["auto"]:
            targets = DECODERS[config.model_type][1] if config.model_type in DECODERS else ENCODER_TARGETS
        with torch.device("meta"):
            skeleton = AutoModelForSequenceClassification.from_config(config)
        check_lora_targets(skeleton, targets, name)

    def _tokenizer(self):
        from transformers import AutoTokenizer

        if not hasattr(self, "_tok"):
            source = self.options["tokenizer"] if self.tiny else self.cfg["name_or_path"]
            self._tok = AutoTokenizer.from_pretrained(resolve_pretrained(source))
            if self._tok.pad_token is None:  # decoder LLMs ship none; the head reads the last non-pad token
                self._tok.pad_token = self._tok.eos_token
            self._tok.padding_side = "right"  # _trim drops the padding columns at the end
        return self._tok

    def _base(self):
        from transformers import AutoModelForSequenceClassification

        if self.tiny:
            import transformers

            tok = self._tokenizer()
            config_cls = getattr(transformers, DECODERS[self.tiny][0])
            try:
                config = config_cls(vocab_size=len(tok), pad_token_id=tok.pad_token_id, num_labels=self.num_labels,
                                    **{**TINY_DECODER, **self.options["tiny"]})
            except (TypeError, ValueError) as exc:
                raise ConfigError("model.options.tiny", f"not a valid {config_cls.__name__}: {exc}") from None
            return AutoModelForSequenceClassification.from_config(config)
        from inflbench.models.causal_lm import dtype_kwarg

        with quiet_pretrained(self.cfg["name_or_path"]):
            base = AutoModelForSequenceClassification.from_pretrained(
                resolve_pretrained(self.cfg["name_or_path"]), num_labels=self.num_labels,
                **dtype_kwarg(getattr(torch, self.options["torch_dtype"])))
        if base.config.pad_token_id is None:
            base.config.pad_token_id = self._tokenizer().pad_token_id
        return base

    def build(self, seed: int) -> nn.Module:
        from peft import LoraConfig, TaskType, get_peft_model

        torch.manual_seed(seed)  # same LoRA/head initialisation for every (re)training from this seed
        base = self._base()
        lora = self.cfg["lora"]
        targets = list(lora["target_modules"])
        if targets == ["auto"]:
            targets = DECODERS[base.config.model_type][1] if base.config.model_type in DECODERS else ENCODER_TARGETS
        names = [n for n, _ in base.named_modules()]
        if not any(n.split(".")[-1] in targets for n in names):
            raise ConfigError("model.lora.target_modules", f"{targets} match no module of {self.cfg['name_or_path']}")
        peft_cfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=lora["r"], lora_alpha=lora["alpha"],
                              lora_dropout=lora.get("dropout", 0.0), target_modules=targets,
                              use_rslora=lora.get("rslora", False))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers deprecations raised inside peft
            return get_peft_model(base, peft_cfg)

    def encode(self, frame: pd.DataFrame) -> Batch:
        tok = self._tokenizer()
        pairs = frame["text_b"].notna().any()
        enc = tok(list(frame["text_a"]), list(frame["text_b"]) if pairs else None, truncation=True,
                  max_length=self.cfg.get("max_length", 128), padding="max_length", return_tensors="pt",
                  return_token_type_ids=self.model_type() not in DECODERS)
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
