"""Paper models at their real widths without downloading them: transformers configs written out here, models
built from them on the meta device (shapes only) or with random weights (the paper-shape CPU check and the
memory benchmark), and the per-sample gradient size of the selected blocks."""

from __future__ import annotations

import functools
import warnings

import torch

#: Architecture facts of the paper models (from their published configs); model.name_or_path -> (type, kwargs).
PAPER_CONFIGS: dict[str, tuple[str, dict]] = {
    "roberta-large": ("roberta", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                      intermediate_size=4096, vocab_size=50265, max_position_embeddings=514,
                                      type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)),
    "meta-llama/Llama-2-13b-chat-hf": ("llama", dict(hidden_size=5120, intermediate_size=13824,
                                                     num_hidden_layers=40, num_attention_heads=40,
                                                     num_key_value_heads=40, vocab_size=32000)),
    "meta-llama/Meta-Llama-3-8B": ("llama", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                                 num_attention_heads=32, num_key_value_heads=8, vocab_size=128256)),
}

#: Per-sample LoRA gradient size of models not built here (SD 1.5 UNet, r = 8 on to_q/to_k/to_v/to_out.0),
#: counted once from the diffusers config; scaled linearly with r.
FIXED_DIMS = {"stable-diffusion-v1-5/stable-diffusion-v1-5": (1_594_368, 8, 860_000_000)}


def transformers_config(name_or_path: str, num_labels: int = 2, **overrides):
    """The transformers config of a paper model (or of a local / packaged model), with ``overrides``."""
    from transformers import AutoConfig, CONFIG_MAPPING

    if name_or_path in PAPER_CONFIGS:
        model_type, kwargs = PAPER_CONFIGS[name_or_path]
        return CONFIG_MAPPING[model_type](**{**kwargs, "num_labels": num_labels, **overrides})
    from inflbench.models import resolve_pretrained

    return AutoConfig.from_pretrained(resolve_pretrained(name_or_path), num_labels=num_labels, **overrides)


def build_lora_model(model_cfg: dict, num_labels: int = 2, device: str = "meta", seed: int = 0, **overrides):
    """LoRA model of ``model_cfg`` (families sequence_classification / causal_lm) from its config:
    ``device="meta"`` for shapes only, ``"cpu"`` for random weights. Trainable parameters as the family sets them."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    family = model_cfg["family"]
    config = transformers_config(model_cfg["name_or_path"], num_labels=num_labels, **overrides)
    lora = model_cfg["lora"]
    torch.manual_seed(seed)
    with torch.device(device), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if family == "sequence_classification":
            model = AutoModelForSequenceClassification.from_config(config)
            task = TaskType.SEQ_CLS
        elif family == "causal_lm":
            model = AutoModelForCausalLM.from_config(config)
            task = TaskType.CAUSAL_LM
        else:
            raise ValueError(f"no config-built models for family {family!r}")
        model = get_peft_model(model, LoraConfig(task_type=task, r=lora["r"], lora_alpha=lora["alpha"],
                                                 lora_dropout=0.0, target_modules=list(lora["target_modules"])))
    if family == "causal_lm":
        for name, param in model.named_parameters():
            param.requires_grad_("lora_" in name)
    return model


@functools.lru_cache(maxsize=16)
def _sizes(family: str, name_or_path: str, r: int, alpha: float, targets: tuple[str, ...]):
    from inflbench.gradients import trainable_blocks

    model_cfg = {"family": family, "name_or_path": name_or_path,
                 "lora": {"r": r, "alpha": alpha, "target_modules": list(targets)}}
    model = build_lora_model(model_cfg)
    modules = trainable_blocks(model)
    blocks = {k: m.weight.numel() + (m.bias.numel() if m.bias is not None else 0) for k, m in modules.items()}
    kfac = sum((m.in_features + (m.bias is not None)) ** 2 + m.out_features ** 2 for m in modules.values())
    return blocks, sum(p.numel() for p in model.parameters()), kfac


def gradient_shape(model_cfg: dict, blocks_spec: dict | None = None) -> dict | None:
    """``{"d": per-sample gradient size of the selected blocks, "d_max": largest block, "blocks": count,
    "model_params": parameters of the whole model, "modules": trainable Linear modules (all, as EK-FAC tracks them),
    "d_all": their per-sample gradient size, "kfac_values": sum over them of (in [+1])^2 + out^2 (one set of
    Kronecker factors)}``, or None when the model's config is not available offline."""
    from inflbench.store import select_blocks

    name = model_cfg["name_or_path"]
    lora = model_cfg["lora"]
    if name in FIXED_DIMS:
        d, r, params = FIXED_DIMS[name]
        d = d * lora["r"] // r
        return {"d": d, "d_max": d // 64, "blocks": 128, "model_params": params}
    try:
        sizes, params, kfac = _sizes(model_cfg["family"], name, lora["r"], lora["alpha"],
                                     tuple(lora["target_modules"]))
    except Exception:  # noqa: BLE001 - no config offline: callers fall back to defaults
        return None
    kept = select_blocks(list(sizes), blocks_spec, check=False) or list(sizes)
    return {"d": sum(sizes[k] for k in kept), "d_max": max(sizes[k] for k in kept), "blocks": len(kept),
            "model_params": params, "modules": len(sizes), "d_all": sum(sizes.values()), "kfac_values": kfac}


def store_gb(n: int, d: int, dtype_bytes: int = 4) -> float:
    return n * d * dtype_bytes / 1e9


__all__ = ["PAPER_CONFIGS", "transformers_config", "build_lora_model", "gradient_shape", "store_gb"]
