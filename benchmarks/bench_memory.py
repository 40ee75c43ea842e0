"""Peak memory (RSS) of the gradients stage and of each method's scoring stage at RoBERTa-large shapes.

Stores: the LoRA (r=4 on query/value, 24 layers) + classifier.out_proj blocks of RoBERTa-large, shapes taken
from the model built from its config on the meta device (no download), filled with random float32 values,
n_train in --sizes, n_target = --n-target (default 100). Every measurement runs in a fresh process
(ru_maxrss of that process); the 1-minute load average of the host is recorded beside it. Every method streams
(no copy of the whole store), the coupled ones (exact_joint, rrinf) included. ``--project N`` adds, per stage and
method, the peak at n_train = N extrapolated linearly from the two largest measured sizes
(``benchmarks/results/memory_projection.csv``). Gradients stage: the real hook engine streaming into a store, on RoBERTa-large at
its real width with --layers encoder layers (random init, short random token sequences), so it runs on a CPU;
the in-memory path (all batches held, then concatenated) is measured beside it. Half-precision stores: Spearman
agreement of exact_block scores from bfloat16 / float16 copies of the smallest store with the float32 ones.

    python benchmarks/bench_memory.py                       # writes benchmarks/results/memory.csv
    python benchmarks/bench_memory.py --sizes 500 --methods tracin datainf
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

MODEL = {"family": "sequence_classification", "name_or_path": "roberta-large",
         "lora": {"r": 4, "alpha": 4, "dropout": 0.0, "target_modules": ["query", "value"]}}
METHODS = ["tracin", "cosine", "datainf", "exact_block", "exact_joint", "lissa", "hyperinf", "hyperinf_fim", "rrinf"]
#: Iterative methods run few steps here: their memory does not depend on the step count.
FAST = {"rrinf": {"iterations": 5}, "lissa": {"depth": 3}, "hyperinf": {"iterations": 3},
        "hyperinf_fim": {"iterations": 3}}
#: Labelled full-length runs (--methods rrinf@default ...): method and parameters as configured.
VARIANTS = {"rrinf@default": ("rrinf", {}),  # 1000 layer steps, Gram cache
            "rrinf@paper": ("rrinf", {"variant": "published", "sampling": "neuron", "iterations": 1000})}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def block_shapes() -> dict[str, tuple[int, ...]]:
    from inflbench.gradients import trainable_blocks
    from inflbench.shapes import build_lora_model
    from inflbench.store import select_blocks

    model = build_lora_model(MODEL)
    blocks = trainable_blocks(model)
    keep = select_blocks(list(blocks), None)
    return {k: (blocks[k].out_features, blocks[k].in_features + (blocks[k].bias is not None)) for k in keep}


def make_store(path: Path, shapes: dict, n: int, seed: int) -> None:
    import torch

    from inflbench.artifacts import write_gradient_index
    from inflbench.store import StoreWriter

    gen = torch.Generator().manual_seed(seed)
    with StoreWriter(path, {k: ((n, *s), torch.float32) for k, s in shapes.items()}) as writer:
        for k, s in shapes.items():
            for start in range(0, n, 256):
                rows = min(256, n - start)
                writer.write(k, start, torch.randn(rows, *s, generator=gen) * 1e-2)
    write_gradient_index(path, {k: (s, torch.float32) for k, s in shapes.items()}, list(range(n)), {})


def child_scores(method: str, train: str, test: str, out: str, group_mb: str = "256") -> dict:
    from inflbench.scoring import score_stores

    name, params = VARIANTS.get(method, (method, FAST.get(method, {})))
    start = time.perf_counter()
    score_stores(name, params, train, test, out, {"group_mb": float(group_mb), "block_dtype": "float32"})
    return {"seconds": time.perf_counter() - start}


def child_gradients(n: int, layers: int, seq: int, mode: str, out: str) -> dict:
    import torch

    from inflbench.artifacts import save_gradients
    from inflbench.gradients import per_sample_gradients, stream_gradients
    from inflbench.shapes import build_lora_model

    torch.manual_seed(0)
    model = build_lora_model(MODEL, device="cpu", num_hidden_layers=layers).eval()
    model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    setup = peak_mb()
    ids = torch.randint(3, 50000, (n, seq))
    data = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.randint(0, 2, (n,))}
    loss = lambda m, b: torch.nn.functional.cross_entropy(  # noqa: E731
        m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"], reduction="none")
    batches = ({k: v[i:i + 32] for k, v in data.items()} for i in range(0, n, 32))
    from inflbench.gradients import trainable_blocks
    from inflbench.store import select_blocks

    from inflbench.gradients import micro_batch_size
    from inflbench.resources import activation_budget

    keep = select_blocks(list(trainable_blocks(model)), None)
    budget = activation_budget({}, "cpu") if mode != "stream_whole" else None  # the gradients stage's default
    start = time.perf_counter()
    if mode == "in_memory":
        save_gradients(out, per_sample_gradients(model, batches, loss, blocks=keep, activation_bytes=budget),
                       list(range(n)), {})
    else:
        stream_gradients(out, model, batches, loss, list(range(n)), {}, blocks=keep, activation_bytes=budget)
    return {"seconds": time.perf_counter() - start, "model_mb": model_mb, "setup_mb": setup,
            "store_mb": os.path.getsize(out) / 2**20, "batch": 32,
            "micro_batch": micro_batch_size(model, {k: v[:32] for k, v in data.items()}, budget)}


def child_ekfac(n: int, m: int, layers: int, seq: int) -> dict:
    """The ekfac scoring stage's work (``stage_model_scores``: kronfluence factors + pairwise scores of every
    trainable module) on RoBERTa-large at its real width with ``layers`` encoder layers, random init (LoRA B
    drawn, as after fine-tuning), random tokens, batches of 32."""
    import torch

    from inflbench.gradients import trainable_blocks
    from inflbench.methods.ekfac import ekfac_influence
    from inflbench.models import get_family, iterate_batches
    from inflbench.shapes import build_lora_model

    model = build_lora_model(MODEL, device="cpu", num_hidden_layers=layers).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1e-2)
    model_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    setup = peak_mb()
    gen = torch.Generator().manual_seed(0)

    def split(count: int) -> list[dict]:
        ids = torch.randint(3, 50000, (count, seq), generator=gen)
        data = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                "labels": torch.randint(0, 2, (count,), generator=gen)}
        return list(iterate_batches(data, 32))

    blocks = {id(mod) for mod in trainable_blocks(model).values()}
    names = [name for name, mod in model.named_modules() if id(mod) in blocks]
    family = get_family(MODEL, num_labels=2)
    start = time.perf_counter()
    out = ekfac_influence(model, split(n), split(m), family.per_sample_loss, names, per_module=True)
    assert all(bool(torch.isfinite(v).all()) for v in out.values())
    return {"seconds": time.perf_counter() - start, "model_mb": model_mb, "setup_mb": setup, "modules": len(names)}


def half_store_agreement(train: Path, test: Path, work: Path, method: str = "exact_block") -> list[dict]:
    """Spearman between scores from the float32 store and from a bfloat16 / float16 copy (same values rounded)."""
    import torch
    from scipy.stats import spearmanr

    from inflbench.artifacts import read_gradient_index, write_gradient_index
    from inflbench.scoring import score_stores
    from inflbench.store import StoreWriter, TensorStore

    def copy(src: Path, dtype) -> Path:
        dst = src.with_name(f"{src.stem}_{str(dtype)[6:]}.safetensors")
        store, index = TensorStore(src), read_gradient_index(src)
        with StoreWriter(dst, {k: (store.shape(k), dtype) for k in store.names}) as writer:
            for k in store.names:
                for start, rows in store.row_chunks(k):
                    writer.write(k, start, rows.to(dtype))
        write_gradient_index(dst, {k: (store.shape(k)[1:], dtype) for k in store.names}, index["sample_ids"], {})
        return dst

    def scores(tr: Path, te: Path) -> torch.Tensor:
        out = work / "agree.safetensors"
        score_stores(method, {}, str(tr), str(te), str(out), {"block_dtype": "float32"})
        return TensorStore(out).read("total")

    ref = scores(train, test)
    rows = []
    for dtype in (torch.bfloat16, torch.float16):
        tr, te = copy(train, dtype), copy(test, dtype)
        got = scores(tr, te)
        rows.append({"stage": "half_store", "method": f"{method}:{str(dtype)[6:]}", "n_train": ref.shape[0],
                     "n_target": ref.shape[1], "store_mb": os.path.getsize(tr) / 2**20,
                     "spearman_all": float(spearmanr(ref.ravel(), got.ravel())[0]),
                     "spearman_train_mean": float(spearmanr(ref.mean(1), got.mean(1))[0])})
        tr.unlink(), te.unlink()
    return rows


def run_child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


KEY = ["stage", "method", "n_train", "n_target", "group_mb", "layers"]


def _keys(frame) -> list[tuple]:
    """KEY values of each row as text, numbers written alike whether they were read as int or float."""
    return [tuple("nan" if v != v else f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in row)
            for row in frame[KEY].values.tolist()]


def save(rows: list[dict], d: int, out: str, keep: bool = False):
    """Write the rows so far (called after every measurement: a long run keeps what it measured). ``keep``:
    rows of an earlier run stay unless this run measured the same (stage, method, n_train, n_target)."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.insert(0, "d_stored", d)
    for k in KEY:
        frame[k] = frame[k] if k in frame else float("nan")
    if keep and Path(out).is_file():
        old = pd.read_csv(out)
        old["group_mb"] = old["group_mb"] if "group_mb" in old else float("nan")
        grouped = old["stage"].eq("scores") & old["method"].ne("ekfac")  # ekfac reads no store
        old.loc[grouped & old["group_mb"].isna(), "group_mb"] = 256  # the default then
        frame = pd.concat([old, frame], ignore_index=True)
        frame = frame[~pd.Series(_keys(frame)).duplicated(keep="last").values].reset_index(drop=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return frame


def project(frame, n: int, out: str, shape: dict | None = None):
    """Peak RSS at n_train = ``n`` per (stage, method): linear in n through the two largest measured sizes,
    and (scores, with ``shape``) the largest measurement plus the growth that the resource formula of
    :func:`inflbench.resources.scores_mem_mb` predicts from there (catches O(n^2) working sets)."""
    import pandas as pd

    from inflbench import resources
    from inflbench.scoring import separable

    rows = []
    measured = frame[frame["stage"].isin(["gradients", "scores"]) & frame["peak_rss_mb"].notna()]
    if "group_mb" in measured:  # the default block groups only
        measured = measured[measured["group_mb"].fillna(256) == 256]
    measured = measured.assign(layers=measured["layers"].fillna(0))
    for (stage, method, layers), g in measured.groupby(["stage", "method", "layers"], sort=False):
        g = g.sort_values("n_train").drop_duplicates("n_train", keep="last")
        if len(g) < 2:
            continue
        (n0, p0), (n1, p1) = g[["n_train", "peak_rss_mb"]].values[-2:]
        slope = (p1 - p0) / (n1 - n0)
        linear = p1 + max(slope, 0.0) * (n - n1)  # a falling peak (allocator, block grouping) is not extrapolated
        formula = float("nan")
        base = VARIANTS.get(method, (method,))[0]
        if stage == "scores" and shape is not None and base != "ekfac":  # ekfac: no store-based formula
            m = int(g["n_target"].values[-1])
            mem = lambda k: resources.scores_mem_mb(base, shape, k, m, separable=separable(base))  # noqa: E731
            formula = p1 + mem(n) - mem(int(n1))
        rows.append({"stage": stage, "method": method, "layers": int(layers), "n_from": f"{int(n0)},{int(n1)}",
                     "mb_per_1000_samples": 1000 * slope, "n_train": n, "projected_peak_mb": linear,
                     "projected_by_formula_mb": formula,
                     "fits_16gb": max(linear, formula if formula == formula else 0) < 16 * 1024})
    frame = pd.DataFrame(rows)
    frame.to_csv(out, index=False)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[500, 2000],
                        help="n_train values (none: only --project from the rows already in --out).")
    parser.add_argument("--n-target", type=int, default=100)
    parser.add_argument("--methods", nargs="*", default=METHODS, help=f"Also {', '.join(VARIANTS)}.")
    parser.add_argument("--layers", type=int, default=2, help="Encoder layers of the gradients-stage model.")
    parser.add_argument("--grad-modes", nargs="+", default=["stream", "in_memory"],
                        choices=["stream", "stream_whole", "in_memory"],
                        help="stream / in_memory: micro-batches from the stage's default activation budget; "
                             "stream_whole: whole batches of 32 (no budget).")
    parser.add_argument("--group-mb", type=float, default=256, help="scores.group_mb of the scoring runs.")
    parser.add_argument("--keep", action="store_true", help="Keep the rows of --out that this run does not measure.")
    parser.add_argument("--project", type=int, default=None, help="Extrapolate every peak to this n_train.")
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--ekfac-layers", type=int, default=0,
                        help="Also measure the ekfac stage (it needs the model) at this many encoder layers.")
    parser.add_argument("--skip-gradients", action="store_true")
    parser.add_argument("--skip-half", action="store_true", help="Skip the half-precision store agreement.")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "memory.csv"))
    parser.add_argument("--child", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.child:
        from inflbench.resources import bound_freed_memory

        bound_freed_memory()  # as every job does (inflbench.jobs.call)
        kind, *rest = args.child
        if kind == "scores":
            res = child_scores(*rest)
        elif kind == "ekfac":
            res = child_ekfac(*map(int, rest))
        else:
            res = child_gradients(int(rest[0]), int(rest[1]), int(rest[2]), rest[3], rest[4])
        print(json.dumps({**res, "peak_rss_mb": peak_mb()}))
        return

    from inflbench.scoring import separable

    if not args.sizes:  # --sizes with no value: project from --out only
        import pandas as pd

        shapes = block_shapes()
        shape = {"d": sum(math.prod(s) for s in shapes.values()),
                 "d_max": max(math.prod(s) for s in shapes.values()), "blocks": len(shapes)}
        print(project(pd.read_csv(args.out), args.project or 4500,
                      str(Path(args.out).with_name("memory_projection.csv")), shape).to_string())
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="inflbench_mem_"))
    work.mkdir(parents=True, exist_ok=True)
    shapes = block_shapes()
    d = sum(math.prod(s) for s in shapes.values())
    rows, test = [], work / "val.safetensors"
    for n in args.sizes:
        if not args.skip_gradients:
            for mode in args.grad_modes:
                res = run_child(["gradients", str(n), str(args.layers), str(args.seq), mode, str(work / "g.safetensors")])
                rows.append({"stage": "gradients", "method": mode, "n_train": n, "n_target": 0,
                             "layers": args.layers, "load1": os.getloadavg()[0], **res})
                print(rows[-1], flush=True)
                save(rows, d, args.out, args.keep)
        if args.ekfac_layers:
            res = run_child(["ekfac", str(n), str(args.n_target), str(args.ekfac_layers), str(args.seq)])
            rows.append({"stage": "scores", "method": "ekfac", "n_train": n, "n_target": args.n_target,
                         "layers": args.ekfac_layers, "couples_blocks": False, "load1": os.getloadavg()[0], **res})
            print(rows[-1], flush=True)
            save(rows, d, args.out, args.keep)
        if not args.methods:
            continue
        train, test = work / f"train{n}.safetensors", work / "val.safetensors"
        make_store(train, shapes, n, seed=n)
        if not test.exists():
            make_store(test, shapes, args.n_target, seed=1)
        for method in args.methods:
            res = run_child(["scores", method, str(train), str(test), str(work / "s.safetensors"), str(args.group_mb)])
            rows.append({"stage": "scores", "method": method, "n_train": n, "n_target": args.n_target,
                         "group_mb": args.group_mb,
                         "layers": 24, "d": d, "store_mb": os.path.getsize(train) / 2**20,
                         "couples_blocks": not separable(VARIANTS.get(method, (method,))[0]),
                         "load1": os.getloadavg()[0], **res})
            print(rows[-1], flush=True)
            save(rows, d, args.out, args.keep)
        if n == min(args.sizes) and not args.skip_half:
            rows += half_store_agreement(train, test, work)
            print(rows[-2:], flush=True)
        train.unlink()
    test.unlink(missing_ok=True)
    frame = save(rows, d, args.out, args.keep)
    print(frame.to_string())
    if args.project:
        print(project(frame, args.project, str(Path(args.out).with_name("memory_projection.csv")),
                      {"d": d, "d_max": max(math.prod(s) for s in shapes.values()), "blocks": len(shapes)}).to_string())


if __name__ == "__main__":
    main()
