"""Memory (MB) and time (minutes) requests of the data-sized jobs, from n, d and the method (docs/scale.md).

``d`` is the per-sample gradient size of the stored blocks, ``d_max`` the largest block, ``n`` / ``m`` the
train / target samples. Formulas count the arrays each stage holds at its peak (streamed stages hold one
batch or one block group, not the split) plus a fixed runtime; they are estimates for the scheduler, scaled by
``resources.mem_factor`` / ``runtime_factor``.
"""

from __future__ import annotations

import math

MB = 2**20
#: Python + torch + transformers resident before any data.
BASE_MB = 1200
#: Sustained float64 / float32 throughput assumed per CPU thread (GFLOP/s); a GPU job counts 50 threads.
GFLOPS_PER_THREAD = 10.0
#: Per-sample forward+backward seconds per 1e9 model parameters (CPU thread / GPU).
SECONDS_PER_GPARAM = {"cpu": 0.5, "cuda": 0.004}
#: When the model's config cannot be read offline.
FALLBACK = {"d": 1_000_000, "d_max": 1_000_000, "blocks": 100, "model_params": 400_000_000, "modules": 100,
            "kfac_values": 100 * 2 * 1024**2}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def bound_freed_memory(nbytes: int = MB) -> bool:
    """Give allocations of at least ``nbytes`` their own mapping, returned to the OS when freed (glibc
    ``mallopt(M_MMAP_THRESHOLD)``). Left dynamic, glibc raises that threshold to the size of the last freed
    large block (up to 32 MB); blocks read one after the other then come from the heap, whose pages stay
    resident behind small survivors, so the peak grows with every block read (rrinf at n = 2000 over 97
    blocks of 32 MB: 3.7 GB instead of 0.67 GB). Called by every job; False where there is no glibc."""
    import ctypes

    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, int(nbytes)))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _mb(nbytes: float) -> int:
    return int(math.ceil(nbytes / MB))


def model_mb(shape: dict, model_cfg: dict) -> int:
    """Weights in memory: float32, or about 0.6 bytes per parameter when loaded in 4 bit."""
    per = 0.6 if (model_cfg.get("options") or {}).get("load_in_4bit") else 4
    return _mb(shape["model_params"] * per)


#: Activations (MB, as counted by :func:`activation_bytes_per_sample`) one gradients micro-batch may keep for
#: backward on the CPU; autograd temporaries come on top (about the same again).
CPU_ACTIVATION_MB = 256


def activation_bytes_per_sample(model_config, tokens: int) -> int | None:
    """Float32 activations a transformer keeps for backward per sample of ``tokens`` tokens: per token and
    layer ~10 hidden-wide tensors (q, k, v, attention output, LayerNorm inputs and outputs, residuals),
    3 FFN-wide ones (up / gate projections, before and after the activation) and 3 per head and key
    position (scores, probabilities, their mask). None when the config lacks these fields (no transformer)."""
    fields = ("hidden_size", "num_hidden_layers", "num_attention_heads")
    if model_config is None or any(not isinstance(getattr(model_config, f, None), int) for f in fields):
        return None
    h, layers, heads = (getattr(model_config, f) for f in fields)
    ffn = getattr(model_config, "intermediate_size", None) or 4 * h
    return 4 * layers * tokens * (10 * h + 3 * ffn + 3 * heads * tokens)


def activation_budget(grad_cfg: dict, device) -> int | None:
    """Bytes of activations per gradients pass (``gradients.activation_mb``; null: CPU_ACTIVATION_MB on the
    CPU, unbounded on a GPU)."""
    mb = grad_cfg.get("activation_mb")
    if mb is None and str(device).startswith("cuda"):
        return None
    return int((mb or CPU_ACTIVATION_MB) * MB)


def gradients_mem_mb(shape: dict, model_cfg: dict, batch_size: int, rows_per_sample: int = 1,
                     dtype_bytes: int = 4, device: str = "cpu", activation_mb: int | None = None) -> int:
    """Model + twice the micro-batch activation budget on the CPU (activations kept for backward + autograd
    temporaries; on a GPU they are device memory) + about four batches of per-sample gradients (hook outputs,
    per-sample sums, the cast copy written to the store); flat in n."""
    host_acts = 0 if device == "cuda" else 2 * (activation_mb or CPU_ACTIVATION_MB)
    return (BASE_MB + model_mb(shape, model_cfg) + host_acts
            + _mb(4 * batch_size * rows_per_sample * shape["d"] * max(dtype_bytes, 4)))


def gradients_runtime(shape: dict, n: int, device: str, threads: int, chunks: int = 1) -> int:
    per = SECONDS_PER_GPARAM["cuda" if device == "cuda" else "cpu"] * shape["model_params"] / 1e9
    if device != "cuda":
        per /= max(threads, 1)
    return int(math.ceil(3 * n * per / chunks / 60)) + 10


def scores_mem_mb(method: str, shape: dict, n: int, m: int, group_mb: int = 256, separable: bool = True,
                  store_bytes: int = 4) -> int:
    """Separable methods: one block group (train + target, read and upcast, method copies: x3) + the total
    and one group of score matrices (float64) + the method's own working set; whole-model methods read one
    train and one target block at a time (+ float64 chunks) beside their own working set: exact_joint its
    n x n system and factor, rrinf its iterate, Gram cache and row norms."""
    d, d_max = shape["d"], shape["d_max"]
    scores = 8 * n * m * 3
    if separable:
        group = min(group_mb * MB, 4 * n * d) * (1 + m / n) * 3
        own = {"exact_block": 3 * 8 * min(d_max, n) ** 2 + 8 * n * d_max,
               "datainf": 2 * 8 * n * n,
               "hyperinf": 8 * n * d_max, "hyperinf_fim": 3 * 8 * d_max**2,
               "lissa": 8 * (n + m) * d_max * 2}.get(method, 0)
        return BASE_MB + _mb(group + scores + own)
    blocks = (n + m) * d_max * 4 * 3 + 64 * MB  # one block each side, its float64 copy, product chunks
    cache = min(2 * 1024 * MB, shape["blocks"] * 8 * n * n) * (1 + m / n)  # rrinf: Grams + their right sides
    own = {"exact_joint": 2 * 8 * min(n, d) ** 2 + 16 * n * m,
           "rrinf": 3 * 8 * n * m + cache + 8 * d}.get(method, 0)
    return BASE_MB + _mb(blocks + scores + own)


def scores_runtime(method: str, shape: dict, n: int, m: int, threads: int, device: str = "cpu",
                   iterations: int = 1000) -> int:
    d, d_max = shape["d"], shape["d_max"]
    flops = {"tracin": 2 * n * m * d, "cosine": 2 * n * m * d,
             "datainf": 2 * n * n * d + 4 * n * m * d,
             "exact_block": d * min(n, d_max) ** 2 * 4 + 2 * n * m * d,
             "exact_joint": 2 * n * n * d + n**3 + 2 * n * m * d,
             "lissa": 4 * iterations * m * d, "hyperinf": 4 * 30 * d * d_max + 2 * n * m * d,
             "hyperinf_fim": 4 * 30 * d * d_max + 2 * n * m * d,
             "rrinf": 4 * iterations * (n + m) * d}.get(method, 4 * n * m * d)
    rate = GFLOPS_PER_THREAD * 1e9 * (50 if device == "cuda" else max(threads, 1))
    return int(math.ceil(2 * flops / rate / 60)) + 10


def block_stats_mem_mb(shape: dict, n: int) -> int:
    """Written Gram by Gram: the largest block's Gram (float64, min(n, d_max)^2) plus two row chunks read from
    the store and their float64 casts (at most 64 MB each in float64)."""
    side = min(n, shape["d_max"])
    return BASE_MB + _mb(8 * side * side + 3 * 64 * MB)


def block_stats_runtime(shape: dict, n: int, threads: int) -> int:
    flops = 2 * n * shape["d"] * min(n, shape["d_max"])
    return int(math.ceil(2 * flops / (GFLOPS_PER_THREAD * 1e9 * max(threads, 1)) / 60)) + 10


def layers_mem_mb(stage: str, shape: dict, n: int, m: int) -> int:
    """Cancellation: per-parameter running sums (float64, 3 x d) + per-sample norms per block + one row chunk.
    Aggregation: the score file's blocks in float64 (n x m each) + the stacked table of one group."""
    if stage == "cancellation":
        return BASE_MB + _mb(3 * 8 * shape["d"] + 8 * n * shape["blocks"] + 2 * (64 * MB))
    return BASE_MB + _mb(2 * 8 * n * m * (shape["blocks"] + 1))


def train_mem_mb(shape: dict, model_cfg: dict, device: str) -> int:
    """Fine-tuning: the weights as loaded (twice: checkpoint and model), plus activations on the CPU."""
    return BASE_MB + model_mb(shape, model_cfg) * (2 if device == "cuda" else 3)


def model_scores_mem_mb(shape: dict, model_cfg: dict, device: str, n: int, m: int, batch_size: int = 32) -> int:
    """EK-FAC (kronfluence): the fine-tuning footprint (the stage's model, kronfluence's copy, activations of a
    batch on the CPU) + the Kronecker factors and their eigenvectors in float32 (8 x kfac_values) + a batch of
    query and of train gradients of all modules with their preconditioned copies (16 x batch x d_all) +
    per-module score matrices (kronfluence's float32 and their float64 copy: 12 n m per module) + the total."""
    modules, d_all = shape.get("modules", shape["blocks"]), shape.get("d_all", shape["d"])
    side = shape["d_max"] // max(int((model_cfg.get("lora") or {}).get("r", 1)), 1)  # a LoRA block is r x side
    kfac = shape.get("kfac_values", 2 * shape["blocks"] * side**2)
    return train_mem_mb(shape, model_cfg, device) + _mb(8 * kfac + 16 * batch_size * d_all
                                                        + 12 * modules * n * m + 24 * n * m)


def train_runtime(shape: dict, samples: int, epochs: int, device: str, threads: int) -> int:
    """Epochs x (train + evaluation passes), each sample a forward and backward pass."""
    return gradients_runtime(shape, samples * epochs, device, threads)
