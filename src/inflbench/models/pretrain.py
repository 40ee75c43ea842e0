"""Pretraining of the tiny offline decoder (``tiny:llama``) before its LoRA fine-tune.

The papers fine-tune LoRA on a *pretrained* LLM; a random-initialised tiny Llama fine-tuned with LoRA alone
stays near chance. The offline analogue: full-parameter training of the tiny Llama on a larger corpus of the
generated task families (every task and class of ``lm_generated``), drawn from its own seed on a random
stream the benchmark's splits never use (those are streams 0 and 1). The math problem space is small, so
independent draws still repeat some benchmark problems by chance: rule pretrain takes the run's splits (every
seed and task) and leaves out every record whose prompt is one of theirs. A held-out stream measures what the
pretraining bought.

``model.options.pretrain`` (schemas/model_options/causal_lm.schema.yaml): ``enabled``, ``steps``,
``corpus_size``, ``heldout_size``, ``lr``, ``batch_size``, ``seed``, ``eval_every``, ``prompt_template``;
``checkpoint`` is filled in by the workflow (the Layout path of rule pretrain).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from inflbench.models import Batch, iterate_batches
from inflbench.progress import Progress
from inflbench.training import evaluate

CORPUS_STREAM = 7  # random stream of the pretraining corpus (the benchmark's: 0 = train+val, 1 = test)
HELDOUT_STREAM = 8  # held-out text of the same families
EVAL_BATCH = 256  # held-out records per evaluation pass


def corpus(size: int, seed: int, prompt_template: str, stream: int = CORPUS_STREAM,
           exclude: frozenset[str] = frozenset()) -> pd.DataFrame:
    """``size`` records, as even as possible over every (task, class) of ``lm_generated``, shuffled; none has a
    prompt in ``exclude`` (the benchmark's samples: the small math problem space repeats problems by chance)."""
    from inflbench.data.lm_generated import TASK_CLASSES, generate

    kinds = [(task, kind) for task in sorted(TASK_CLASSES) for kind in TASK_CLASSES[task]]
    per_kind = math.ceil(1.5 * size / len(kinds))  # room for the excluded prompts
    rows = []
    for t, task in enumerate(sorted(TASK_CLASSES)):
        for c, kind in enumerate(TASK_CLASSES[task]):
            rng = np.random.default_rng([seed, stream, t, c])
            records = ((prompt_template.format(input=text), answer) for text, answer in generate(task, kind, per_kind,
                                                                                                 rng))
            rows += [{"task": task, "class_name": kind, "prompt": prompt, "answer": answer, "label": 0}
                     for prompt, answer in records if prompt not in exclude]
    if len(rows) < size:
        raise ValueError(f"only {len(rows)} generated records are not excluded; lower the corpus size")
    order = np.random.default_rng([seed, stream]).permutation(len(rows))[:size]
    return pd.DataFrame([rows[i] for i in order]).reset_index(drop=True)


def pretrain(family, model, train: Batch, heldout: Batch, opts: dict, log=print) -> tuple[dict, pd.DataFrame]:
    """Full-parameter AdamW (linear warm-up, cosine decay) for ``opts['steps']`` steps on random batches of
    ``train``; returns (final state dict, held-out curve every ``eval_every`` steps, step 0 = the random init)."""
    torch.manual_seed(opts["seed"])
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(params, lr=opts["lr"], weight_decay=0.0)
    steps, warmup = opts["steps"], max(1, opts["steps"] // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0)))))
    generator = torch.Generator().manual_seed(opts["seed"])
    n = next(iter(train.values())).shape[0]

    def record(step: int, train_loss: float) -> dict:
        row = {"step": step, "train_loss": train_loss, **{f"heldout_{k}": v for k, v in
                                                         evaluate(family, model, heldout, EVAL_BATCH).items()}}
        log(f"step {step}/{steps}: " + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "step"))
        return row

    curve, window = [record(0, math.nan)], []
    progress = Progress("pretrain", steps, "steps", log=log)
    for step in range(1, steps + 1):
        model.train()
        rows = torch.randint(n, (opts["batch_size"],), generator=generator)
        batch = next(iterate_batches(train, opts["batch_size"], rows))
        loss = family.per_sample_loss(model, batch).mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        schedule.step()
        window.append(loss.item())
        progress.update()
        if step % opts["eval_every"] == 0 or step == steps:
            curve.append(record(step, float(np.mean(window))))
            window = []
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, pd.DataFrame(curve)


def enabled(model_cfg: dict) -> bool:
    options = model_cfg.get("options") or {}
    return bool((options.get("pretrain") or {}).get("enabled"))


def with_checkpoint(cfg: dict, path: str) -> dict:
    """The config with ``model.options.pretrain.checkpoint`` = ``path`` where pretraining is enabled (every job
    that builds the model then loads the pretrained weights)."""
    if not enabled(cfg["model"]):
        return cfg
    options = cfg["model"]["options"]
    return {**cfg, "model": {**cfg["model"], "options": {**options, "pretrain": {**options["pretrain"],
                                                                                 "checkpoint": str(path)}}}}


def pretrain_tiny(model_cfg: dict, exclude: frozenset[str] = frozenset(), log=print) -> tuple[dict, pd.DataFrame]:
    """The pretrained weights of ``model_cfg``'s tiny Llama and the held-out curve (per task at the end); no
    corpus or held-out record has a prompt in ``exclude``."""
    from inflbench.models import get_family

    family = get_family(model_cfg)
    opts = family.options["pretrain"]
    torch.manual_seed(opts["seed"])
    model = family._load_random_base()
    train = family.encode(corpus(opts["corpus_size"], opts["seed"], opts["prompt_template"], exclude=exclude))
    heldout_frame = corpus(opts["heldout_size"], opts["seed"], opts["prompt_template"], stream=HELDOUT_STREAM,
                           exclude=exclude)
    state, curve = pretrain(family, model, train, family.encode(heldout_frame), opts, log=log)
    for task, frame in heldout_frame.groupby("task"):
        for key, value in evaluate(family, model, family.encode(frame), EVAL_BATCH).items():
            curve.loc[curve.index[-1], f"heldout_{task}_{key}"] = value
    return state, curve
