"""Per-sample gradients: batched hooks vs a per-example backward loop on the default config.

Writes benchmarks/out/gradients.csv (one row per batch size) and prints it. Not a test: numbers depend
on the machine. Usage: python benchmarks/bench_gradients.py [--n 128] [--batch-sizes 16 32 64]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from inflbench.config import validate_config
from inflbench.data import prepare_splits
from inflbench.gradients import per_sample_gradients, per_sample_gradients_loop
from inflbench.models import get_family, iterate_batches

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=128, help="training samples to differentiate")
    parser.add_argument("--loop-n", type=int, default=48, help="samples timed in the loop (extrapolated)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "gradients.csv"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)

    cfg = validate_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    cfg["data"]["sizes"]["train"] = max(args.n, cfg["data"]["sizes"]["train"])
    frame = prepare_splits(cfg["data"], cfg["data"]["tasks"][0], cfg["seed"])["train"].iloc[: args.n]
    family = get_family(cfg["model"], num_labels=2)
    model = family.build(cfg["seed"]).eval()
    with torch.no_grad():  # LoRA B starts at zero (all A gradients zero); use fine-tuned-like values
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    data = family.encode(frame)

    per_sample_gradients_loop(model, iterate_batches({k: v[:2] for k, v in data.items()}, 1), family.per_sample_loss)
    start = time.perf_counter()
    loop = per_sample_gradients_loop(model, iterate_batches({k: v[: args.loop_n] for k, v in data.items()}, 1),
                                     family.per_sample_loss)
    loop_per_sample = (time.perf_counter() - start) / args.loop_n

    rows = []
    for batch_size in args.batch_sizes:
        start = time.perf_counter()
        grads = per_sample_gradients(model, iterate_batches(data, batch_size), family.per_sample_loss)
        batched_per_sample = (time.perf_counter() - start) / args.n
        err = max(float((grads[k][: args.loop_n] - loop[k]).abs().max() / loop[k].abs().max()) for k in loop)
        rows.append({"model": cfg["model"]["name_or_path"], "n": args.n, "batch_size": batch_size,
                     "threads": torch.get_num_threads(), "loop_ms_per_sample": 1e3 * loop_per_sample,
                     "batched_ms_per_sample": 1e3 * batched_per_sample,
                     "speedup": loop_per_sample / batched_per_sample, "max_rel_error": err})
    table = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
