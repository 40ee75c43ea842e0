"""Per-sample gradients of all trainable Linear blocks, one forward/backward per batch.

A *block* is one trainable ``nn.Linear`` (a LoRA A or B matrix of one layer, or a head layer); its
gradient has the weight's shape ``(out, in)``, with the bias appended as a last column when present.
Per-sample gradients come from module hooks: for a linear map y = W a applied at positions t, the
gradient of sample b's loss is sum_t g[b,t] a[b,t]^T, where g is the gradient of the summed batch loss
with respect to y (samples do not interact, so row b of g only carries sample b's loss).

Optionally the frozen word-embedding matrix is a block too (the layer-choice paper's WE), compressed to the rows of the
tokens present in the task data: sample b's gradient of row r (token ``token_ids[r]``) is the sum of g[b,t]
over the positions t holding that token, where g is the gradient with respect to the embedding output.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

LossFn = Callable[[nn.Module, dict], torch.Tensor]

_PEFT_NOISE = re.compile(r"^base_model\.model\.|\.default(?=\.|$)|\.modules_to_save")


def block_name(module_name: str) -> str:
    """Readable block name: PEFT prefixes and adapter names removed
    (``base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.default`` ->
    ``bert.encoder.layer.0.attention.self.query.lora_A``)."""
    return _PEFT_NOISE.sub("", module_name)


def trainable_blocks(model: nn.Module) -> dict[str, nn.Linear]:
    """Block name -> Linear module for every module holding trainable parameters.

    Raises ValueError naming a trainable parameter that is not a Linear weight/bias, since the
    hook engine would silently miss it.
    """
    blocks: dict[str, nn.Linear] = {}
    covered: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.weight.requires_grad:
            blocks[block_name(name)] = module
            covered.add(id(module.weight))
            if module.bias is not None:
                if not module.bias.requires_grad:
                    raise ValueError(f"{name}: weight is trainable but bias is frozen; not supported")
                covered.add(id(module.bias))
    for name, param in model.named_parameters():
        if param.requires_grad and id(param) not in covered:
            raise ValueError(f"trainable parameter {name} is not a Linear layer; per-sample gradients "
                             "are implemented for Linear blocks (LoRA matrices, heads)")
    if not blocks:
        raise ValueError("model has no trainable Linear block")
    return blocks


class _BlockHook:
    """Collects sum_t g a^T per batch row for one Linear module."""

    def __init__(self, module: nn.Linear):
        self.module = module
        self.grads: list[torch.Tensor] = []
        self.handle = module.register_forward_hook(self._forward)

    def _forward(self, module, inputs, output):
        if not torch.is_grad_enabled():
            return
        a = inputs[0].detach()
        if module.bias is not None:
            a = torch.cat([a, a.new_ones(a.shape[:-1] + (1,))], dim=-1)

        def on_grad(g: torch.Tensor) -> None:
            rows = g.shape[0]
            self.grads.append(torch.einsum("bto,bti->boi", g.reshape(rows, -1, g.shape[-1]),
                                           a.reshape(rows, -1, a.shape[-1])))

        output.register_hook(on_grad)

    def take(self) -> torch.Tensor:
        # a module used several times in one forward contributes the sum of its uses
        total = self.grads[0]
        for extra in self.grads[1:]:
            total = total + extra
        self.grads = []
        return total


def input_embedding(model: nn.Module) -> tuple[str, nn.Embedding]:
    """(block name, module) of the model's input word embedding (``get_input_embeddings``).

    Raises ValueError when the model has none or when it is trainable (then it is not a frozen WE block)."""
    getter = getattr(model, "get_input_embeddings", None)
    module = getter() if getter is not None else None
    if not isinstance(module, nn.Embedding):
        raise ValueError("model has no input word embedding (nn.Embedding via get_input_embeddings)")
    if module.weight.requires_grad:
        raise ValueError("the word embedding is trainable; word-embedding gradients need it frozen")
    name = next(n for n, m in model.named_modules() if m is module)
    return block_name(name), module


def present_tokens(encoded: Iterable[dict]) -> torch.Tensor:
    """Sorted ids of the tokens at attended positions (``attention_mask`` = 1) of the encoded splits."""
    ids = [b["input_ids"][b["attention_mask"].bool()] for b in encoded]
    return torch.unique(torch.cat(ids)).sort().values


class _EmbeddingHook:
    """Per-sample gradient of a frozen embedding, restricted to the rows ``token_ids``.

    The forward hook swaps the (grad-free) output for a leaf that requires grad, so the backward pass
    reaches it; positions holding other ids (padding) are dropped (their gradient is exactly zero)."""

    def __init__(self, module: nn.Embedding, token_ids: torch.Tensor):
        self.token_ids = torch.as_tensor(token_ids, dtype=torch.long)
        row = torch.full((module.num_embeddings,), len(self.token_ids), dtype=torch.long)
        row[self.token_ids] = torch.arange(len(self.token_ids))
        self.row = row  # vocabulary id -> compressed row (len(token_ids) = dropped)
        self.grads: list[torch.Tensor] = []
        self.handle = module.register_forward_hook(self._forward)

    def _forward(self, module, inputs, output):
        if not torch.is_grad_enabled():
            return None
        rows = self.row.to(inputs[0].device)[inputs[0]]
        leaf = output.detach().requires_grad_(True)

        def on_grad(g: torch.Tensor) -> None:
            b, _, h = g.shape
            out = g.new_zeros(b, len(self.token_ids) + 1, h)
            out.scatter_add_(1, rows[..., None].expand(-1, -1, h), g)
            self.grads.append(out[:, :-1])

        leaf.register_hook(on_grad)
        return leaf

    take = _BlockHook.take


def micro_batch_size(model: nn.Module, batch: dict, activation_bytes: int | None, rows_per_sample: int = 1) -> int:
    """Samples of ``batch`` per forward/backward pass so that the activations kept for backward
    (:func:`inflbench.resources.activation_bytes_per_sample` at the batch's padded length) stay within
    ``activation_bytes``; the whole batch when there is no budget or the model is not a transformer."""
    from inflbench.resources import activation_bytes_per_sample

    n = next(iter(batch.values())).shape[0]
    ids = batch.get("input_ids")
    per = None if activation_bytes is None or ids is None else \
        activation_bytes_per_sample(getattr(model, "config", None), ids.shape[-1])
    return n if per is None else max(1, min(n, activation_bytes // (per * rows_per_sample)))


def _micro_batches(model: nn.Module, batches: Iterable[dict], activation_bytes: int | None,
                   rows_per_sample: int) -> Iterator[dict]:
    for batch in batches:
        n = next(iter(batch.values())).shape[0]
        size = micro_batch_size(model, batch, activation_bytes, rows_per_sample)
        for start in range(0, n, size):
            yield batch if size >= n else {k: v[start:start + size] for k, v in batch.items()}


def iter_sample_gradients(model: nn.Module, batches: Iterable[dict], loss_fn: LossFn,
                          rows_per_sample: int = 1, dtype: torch.dtype = torch.float32,
                          word_embeddings: torch.Tensor | None = None, blocks: Iterable[str] | None = None,
                          activation_bytes: int | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Per micro-batch: block name -> ``(samples, out, in[+1])`` per-sample gradients on the CPU in ``dtype``.

    ``blocks``: names of the trainable blocks to hook (default all); see :func:`per_sample_gradients`.
    ``activation_bytes``: each batch runs as consecutive micro-batches of :func:`micro_batch_size` samples
    (a sample's gradient does not depend on its batch-mates: same rows, same order, same padding)."""
    modules = trainable_blocks(model)
    if blocks is not None:
        wanted = set(blocks)
        modules = {k: m for k, m in modules.items() if k in wanted}
    hooks = {name: _BlockHook(module) for name, module in modules.items()}
    if word_embeddings is not None:
        we_name, we_module = input_embedding(model)
        hooks[we_name] = _EmbeddingHook(we_module, word_embeddings)
    try:
        for batch in _micro_batches(model, batches, activation_bytes, rows_per_sample):
            model.zero_grad(set_to_none=True)
            losses = loss_fn(model, batch)
            losses.sum().backward()
            out = {}
            for name, hook in hooks.items():
                g = hook.take()
                if rows_per_sample > 1:
                    g = g.reshape(-1, rows_per_sample, *g.shape[1:]).sum(1)
                out[name] = g.to("cpu", dtype)
            yield out
    finally:
        for hook in hooks.values():
            hook.handle.remove()
        model.zero_grad(set_to_none=True)


def per_sample_gradients(model: nn.Module, batches: Iterable[dict], loss_fn: LossFn,
                         rows_per_sample: int = 1, dtype: torch.dtype = torch.float32,
                         word_embeddings: torch.Tensor | None = None, blocks: Iterable[str] | None = None,
                         activation_bytes: int | None = None) -> dict[str, torch.Tensor]:
    """Block name -> ``(n, out, in[+1])`` per-sample gradients over all ``batches`` (held in memory;
    :func:`stream_gradients` writes them to a store batch by batch instead).

    ``loss_fn(model, batch)`` returns one loss per model row; with ``rows_per_sample`` = k, k
    consecutive rows belong to one sample and their gradients are summed. The model should be in
    eval mode (no dropout), so a sample's gradient does not depend on the batch it is in.
    ``word_embeddings``: token ids; adds the input embedding as a block ``(n, len(ids), hidden)``.
    ``blocks``: trainable block names to keep (default all). ``activation_bytes``: micro-batch budget
    (:func:`iter_sample_gradients`).
    """
    out: dict[str, list[torch.Tensor]] = {}
    for part in iter_sample_gradients(model, batches, loss_fn, rows_per_sample, dtype, word_embeddings, blocks,
                                      activation_bytes):
        for name, g in part.items():
            out.setdefault(name, []).append(g)
    return {name: torch.cat(parts) for name, parts in out.items()}


def stream_gradients(path: str | Path, model: nn.Module, batches: Iterable[dict], loss_fn: LossFn,
                     sample_ids: list[int], meta: dict, rows_per_sample: int = 1,
                     dtype: torch.dtype = torch.float32, word_embeddings: torch.Tensor | None = None,
                     blocks: Iterable[str] | None = None, activation_bytes: int | None = None) -> int:
    """:func:`per_sample_gradients` + ``artifacts.save_gradients``, each (micro-)batch written into the
    preallocated store as it is computed (peak memory: the model plus one micro-batch's activations and
    gradients). Returns the number of blocks."""
    from inflbench.artifacts import gradient_writer, write_gradient_index

    n = len(sample_ids)
    writer, start, specs = None, 0, {}
    try:
        for part in iter_sample_gradients(model, batches, loss_fn, rows_per_sample, dtype, word_embeddings, blocks,
                                          activation_bytes):
            if writer is None:
                specs = {k: ((n, *g.shape[1:]), g.dtype) for k, g in part.items()}
                writer = gradient_writer(path, specs, meta)
            for name, g in part.items():
                writer.write(name, start, g)
            start += next(iter(part.values())).shape[0]
        if writer is None or start != n:
            raise ValueError(f"{path}: got gradients of {start} samples, expected {n}")
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    writer.close()
    write_gradient_index(path, {k: (s[1:], d) for k, (s, d) in specs.items()}, sample_ids, meta)
    return len(specs)


def per_sample_gradients_loop(model: nn.Module, samples: Iterable[dict], loss_fn: LossFn,
                              word_embeddings: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Reference: one backward per sample via ``torch.autograd.grad`` (slow; for tests/benchmarks).
    With ``word_embeddings`` the full embedding weight gets a gradient, of which those rows are kept."""
    blocks = trainable_blocks(model)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in blocks}
    we = None
    if word_embeddings is not None:
        we_name, we_module = input_embedding(model)
        we, out[we_name] = we_module, []
        we.weight.requires_grad_(True)
    try:
        for sample in samples:
            params = [p for m in blocks.values() for p in ([m.weight] + ([m.bias] if m.bias is not None else []))]
            grads = iter(torch.autograd.grad(loss_fn(model, sample).sum(), params + ([we.weight] if we else [])))
            for name, module in blocks.items():
                g = next(grads)
                if module.bias is not None:
                    g = torch.cat([g, next(grads)[:, None]], dim=1)
                out[name].append(g.detach().cpu())
            if we is not None:
                out[we_name].append(next(grads)[torch.as_tensor(word_embeddings)].detach().cpu())
    finally:
        if we is not None:
            we.weight.requires_grad_(False)
    return {name: torch.stack(parts) for name, parts in out.items()}


def fingerprint(obj) -> str:
    """Short stable hash of a JSON-able object (configs, model ids)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
