"""GPU smoke run of the paper-shape path: fine-tune -> streamed per-sample gradients -> block statistics -> every
scoring method of a paper profile, with the model at its real width built from its config (random weights, no
download) on a CUDA device, checked against the same computation on the CPU.

What it records (one CSV row per step, ``--out``/gpu_smoke.csv; log beside it):
* ``finetune``: one epoch of the profile's training settings on random-token samples of ``model.max_length``;
* ``gradients``: the hook engine streaming the train and target stores at ``--n-train`` / ``--n-test``
  (capped so that this stage fits ``--grad-seconds``, from the rate of a first small store);
* ``gradients_vs_cpu``: the same model copied to the CPU, ``--n-check`` samples, max relative error per block;
* ``block_stats``: the shared Grams of the train store on the device (the stats rule takes ``scores.device``);
  ``block_stats_vs_cpu``: the same on the small store, device against the CPU, max relative error of the Grams;
* ``scores`` per ``methods:`` entry of the profile (+ solver / Gram-dtype variants) on the device, in the
  order given, until ``--score-seconds`` is spent; ``scores_vs_cpu``: each entry on a small store pair
  (``--n-check`` x 16) scored on the device and on the CPU, max relative difference and correlation of totals;
* the same pipeline, smaller, for the Llama-2-13B width decoder (``--decoder-layers`` layers).

    python benchmarks/gpu_smoke.py --out /tmp/gpu                                  # CUDA, paper-glue profile
    python benchmarks/gpu_smoke.py --device cpu --layers 2 --n-train 64 --n-test 8  # the same path on a CPU
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import yaml  # noqa: E402

from inflbench.gradients import stream_gradients, trainable_blocks  # noqa: E402
from inflbench.methods import get, method_entry  # noqa: E402
from inflbench.models import get_family, iterate_batches  # noqa: E402
from inflbench.resources import activation_budget, peak_rss_mb  # noqa: E402
from inflbench.scoring import score_stores  # noqa: E402
from inflbench.shapes import build_lora_model  # noqa: E402
from inflbench.store import TensorStore, select_blocks  # noqa: E402
from inflbench.training import TrainArgs, finetune  # noqa: E402

#: Extra entries beside the profile's: the faster solvers / Gram dtype of the same estimands.
VARIANTS = {"hyperinf[solver=direct]": {"method": "hyperinf", "solver": "direct"},
            "hyperinf_fim": {}, "hyperinf_fim[solver=direct]": {"method": "hyperinf_fim", "solver": "direct"},
            "exact_block[gram_dtype=float32]": {"method": "exact_block", "gram_dtype": "float32"},
            "hyperinf[dtype=float64]": {"method": "hyperinf", "dtype": "float64"}}
DECODER = {"family": "causal_lm", "name_or_path": "meta-llama/Llama-2-13b-chat-hf",
           "lora": {"r": 8, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
           "options": {"load_in_4bit": False}}
DECODER_METHODS = ["tracin", "datainf", "exact_block", "hyperinf[solver=direct]", "lissa", "rrinf"]
#: Left out of the small-pair CPU comparison (the same kernels as another entry, minutes on a CPU).
NO_CPU_CHECK = {"hyperinf_published"}
FIELDS = ["model", "step", "item", "n_train", "n_test", "seconds", "gpu_peak_mb", "host_peak_mb", "max_rel_err",
          "corr", "status", "note"]


class Recorder:
    def __init__(self, out: Path, dev: torch.device, check_on_cpu: bool):
        self.rows, self.out, self.dev, self.check_on_cpu = [], out, dev, check_on_cpu
        self.log = open(out / "gpu_smoke.log", "a")

    def say(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def reset(self) -> None:
        if self.dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def add(self, **row) -> None:
        if self.dev.type == "cuda" and "gpu_peak_mb" not in row:
            row["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
        row.setdefault("host_peak_mb", round(peak_rss_mb()))
        row.setdefault("status", "ok")
        self.rows.append(row)
        self.say(" ".join(f"{k}={v}" for k, v in row.items()))
        with open(self.out / "gpu_smoke.csv", "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS)
            w.writeheader()
            w.writerows(self.rows)

    def error(self, exc: Exception, **row) -> None:
        """Record a failed step and go on: one run should show every failure."""
        self.add(**row, status="error", note=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        self.say(traceback.format_exc())


def random_split(family_name: str, n: int, length: int, vocab: int, seed: int, num_labels: int = 2) -> dict:
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (n, length), generator=gen)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "labels": torch.randint(0, num_labels, (n,), generator=gen)}
    if family_name == "causal_lm":  # the last quarter of each sequence is the "answer"
        mask = torch.zeros_like(ids)
        mask[:, -max(1, length // 4):] = 1
        batch.update(loss_mask=mask, target_ids=torch.roll(ids, -1, 1))
    return batch


def gradients(path: Path, model, family, data: dict, batch_size: int, blocks: list[str]) -> float:
    dev = next(model.parameters()).device
    n = len(data["input_ids"])
    batches = ({k: v.to(dev) for k, v in b.items()} for b in iterate_batches(data, batch_size))
    start = time.perf_counter()
    stream_gradients(path, model, batches, family.per_sample_loss, list(range(n)), {}, family.rows_per_sample,
                     blocks=blocks, activation_bytes=activation_budget({}, dev))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    a, b = a.double().flatten(), b.double().flatten()
    rel = float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
    corr = float(torch.corrcoef(torch.stack([a, b]))[0, 1]) if a.numel() > 1 else float("nan")
    return rel, corr


def run_model(tag: str, model_cfg: dict, methods: dict, args, rec: Recorder, tmp: Path, overrides: dict,
              grad_batch: int, train_cfg: dict) -> tuple:
    """Every step on one model; returns (model, family, 16 x 16 samples) for the EK-FAC check."""
    dev = rec.dev
    family = get_family(model_cfg, num_labels=2)
    length = model_cfg["max_length"]
    rec.reset()
    start = time.perf_counter()
    model = build_lora_model(model_cfg, device=str(dev), **overrides)
    vocab = model.base_model.model.config.vocab_size
    rec.add(model=tag, step="build", item=f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params",
            seconds=round(time.perf_counter() - start, 2))

    # fine-tune: one epoch of the profile's settings
    ft = random_split(family.name, args.n_finetune, length, vocab, 1)
    val = random_split(family.name, 32, length, vocab, 2)
    rec.reset()
    start = time.perf_counter()
    targs = TrainArgs(epochs=1, lr=train_cfg.get("lr", 3e-4), batch_size=train_cfg.get("batch_size", 32),
                      precision=train_cfg.get("precision", "float32"))
    finetune(family, model, ft, val, targs, dev, log=lambda *_: None)
    model.eval()
    steps = math.ceil(args.n_finetune / targs.batch_size)
    rec.add(model=tag, step="finetune", item=f"{steps} steps + 2 evals, batch {targs.batch_size}, len {length}",
            n_train=args.n_finetune, seconds=round(time.perf_counter() - start, 2))

    blocks = select_blocks(list(trainable_blocks(model)), None)
    # small store pair: the rate of the gradients stage, and the device-vs-CPU checks
    small = {"train": random_split(family.name, args.n_check, length, vocab, 3),
             "test": random_split(family.name, 16, length, vocab, 4)}
    paths = {s: tmp / f"{tag}_small_{s}.safetensors" for s in small}
    gradients(paths["test"], model, family, small["test"], grad_batch, blocks)  # warm-up
    rec.reset()
    sec = gradients(paths["train"], model, family, small["train"], grad_batch, blocks)
    rate = args.n_check / sec
    rec.add(model=tag, step="gradients", item=f"{len(blocks)} blocks, batch {grad_batch}, len {length}",
            n_train=args.n_check, seconds=round(sec, 3), note=f"{rate:.1f} samples/s")

    if dev.type != "cpu" or args.check_on_cpu:
        k = min(args.n_check, 16)
        cpu_model = copy.deepcopy(model).cpu()
        cpu_path = tmp / f"{tag}_cpu_train.safetensors"
        part = {key: v[:k] for key, v in small["train"].items()}
        start = time.perf_counter()
        gradients(cpu_path, cpu_model, family, part, min(grad_batch, 8), blocks)
        cpu_sec = time.perf_counter() - start
        del cpu_model
        ref, got = TensorStore(cpu_path), TensorStore(paths["train"])
        worst, worst_block, corr = 0.0, "", 1.0
        for name in ref.names:
            rel, c = compare(got.read(name)[:k], ref.read(name))
            if rel > worst:
                worst, worst_block = rel, name
            corr = min(corr, c)
        rec.add(model=tag, step="gradients_vs_cpu", item=f"{len(ref.names)} blocks, worst {worst_block}", n_train=k,
                seconds=round(cpu_sec, 2), max_rel_err=f"{worst:.2e}", corr=f"{corr:.9f}",
                note=f"device {sec / args.n_check * k:.3f}s vs cpu {cpu_sec:.2f}s for {k} samples")

    small_stats = tmp / f"{tag}_small_stats.safetensors"
    try:
        stats_vs_cpu(tag, paths["train"], small_stats, rec, args.n_check)
    except Exception as exc:
        rec.error(exc, model=tag, step="block_stats_vs_cpu")
    for entry, spec in methods.items():  # each entry on the small pair: device against the CPU
        scores = []
        try:
            method, params = method_entry(entry, spec, 0)
            for where in wheres(dev, rec.check_on_cpu) if entry not in NO_CPU_CHECK else (str(dev),):
                out = tmp / f"{tag}_small_{entry}_{where}.safetensors"
                rec.reset()
                start = time.perf_counter()
                stats = None
                if get(method).block_stats:
                    stats = small_stats
                    if not stats.exists():
                        block_stats(paths["train"], stats, str(dev))
                score_stores(method, params, str(paths["train"]), str(paths["test"]), str(out),
                             {"device": where, "block_dtype": "float32"}, stats_path=str(stats) if stats else None)
                scores.append((TensorStore(out).read("total"), time.perf_counter() - start))
            if len(scores) == 2:
                (dev_total, dev_sec), (cpu_total, cpu_sec) = scores
                rel, corr = compare(dev_total, cpu_total)
                rec.add(model=tag, step="scores_vs_cpu", item=entry, n_train=args.n_check, n_test=16,
                        seconds=round(dev_sec, 3), max_rel_err=f"{rel:.2e}", corr=f"{corr:.9f}",
                        note=f"cpu {cpu_sec:.2f}s" + ("; seeded sampling" if "seed" in params else ""))
        except Exception as exc:
            rec.error(exc, model=tag, step="scores_vs_cpu", item=entry)

    # paper-size stores, capped by the measured rate
    n_train = int(min(args.n_train, max(args.n_check, rate * args.grad_seconds * 0.9)))
    n_test = min(args.n_test, max(16, n_train // 9))
    stores = {}
    for split, n, seed in (("train", n_train, 5), ("test", n_test, 6)):
        data = random_split(family.name, n, length, vocab, seed)
        stores[split] = tmp / f"{tag}_{split}.safetensors"
        rec.reset()
        sec = gradients(stores[split], model, family, data, grad_batch, blocks)
        size = stores[split].stat().st_size / 2**30
        rec.add(model=tag, step="gradients", item=f"{split} store {size:.2f} GiB", n_train=n, seconds=round(sec, 2),
                note=f"{n / sec:.1f} samples/s")
        del data
    io_probe(tag, stores["train"], rec)
    stats = tmp / f"{tag}_stats.safetensors"
    rec.reset()
    start = time.perf_counter()
    block_stats(stores["train"], stats, str(dev))
    rec.add(model=tag, step="block_stats", item=f"{dev} (stats rule)", n_train=n_train,
            seconds=round(time.perf_counter() - start, 2))

    budget_end = time.perf_counter() + args.score_seconds
    for entry, spec in methods.items():
        if time.perf_counter() > budget_end:
            rec.add(model=tag, step="scores", item=entry, n_train=n_train, n_test=n_test, status="skipped",
                    note="--score-seconds spent")
            continue
        out = tmp / f"{tag}_{entry}.safetensors"
        rec.reset()
        start = time.perf_counter()
        try:
            method, params = method_entry(entry, spec, 0)
            meta = score_stores(method, params, str(stores["train"]), str(stores["test"]), str(out),
                                {"device": str(dev), "block_dtype": "float32"},
                                stats_path=str(stats) if get(method).block_stats else None)
            total = TensorStore(out).read("total")
            conv = {k: v for k, v in meta.items() if "converged" in k or "steps" in k}
            rec.add(model=tag, step="scores", item=entry, n_train=n_train, n_test=n_test,
                    seconds=round(time.perf_counter() - start, 2),
                    status="ok" if bool(torch.isfinite(total).all()) else "non-finite", note=str(conv)[:200])
        except Exception as exc:
            rec.error(exc, model=tag, step="scores", item=entry)
        out.unlink(missing_ok=True)
    return model, family, {s: {k: v[:16] for k, v in d.items()} for s, d in small.items()}


def ekfac(tag: str, model, family, small: dict, rec: Recorder) -> None:
    """EK-FAC (kronfluence, the model_scores rule) on 16 x 16 samples, on the device and on the CPU."""
    from inflbench.methods import make_params
    from inflbench.methods.ekfac import kronfluence_available

    if not kronfluence_available():
        rec.add(model=tag, step="scores_vs_cpu", item="ekfac", status="skipped", note="kronfluence not installed")
        return
    dev, totals = rec.dev, []
    try:
        for where in wheres(dev, rec.check_on_cpu):
            m = model if not totals else copy.deepcopy(model).cpu()
            blocks = {id(mod): k for k, mod in trainable_blocks(m).items()}
            names = [name for name, mod in m.named_modules() if id(mod) in blocks]
            batches = {s: list(iterate_batches(small[s], 16)) for s in small}
            rec.reset()
            start = time.perf_counter()
            out = get("ekfac").fn(m, batches["train"], batches["test"], family.per_sample_loss, names,
                                  make_params("ekfac"))
            totals.append((sum(v.double().cpu() for v in out.values()), time.perf_counter() - start))
        if len(totals) == 2:
            (dev_total, dev_sec), (cpu_total, cpu_sec) = totals
            rel, corr = compare(dev_total, cpu_total)
            rec.add(model=tag, step="scores_vs_cpu", item="ekfac", n_train=16, n_test=16,
                    seconds=round(dev_sec, 2), max_rel_err=f"{rel:.2e}", corr=f"{corr:.9f}",
                    note=f"cpu {cpu_sec:.2f}s")
    except Exception as exc:
        rec.error(exc, model=tag, step="scores_vs_cpu", item="ekfac")


def wheres(dev: torch.device, check_on_cpu: bool) -> tuple[str, ...]:
    """Devices of a check: the device, then the CPU (both on the CPU with --check-on-cpu)."""
    return (str(dev), "cpu") if dev.type != "cpu" or check_on_cpu else (str(dev),)


def io_probe(tag: str, path: Path, rec: Recorder) -> None:
    """Where a one-pass method's time goes on a device: reading the store into host memory, and the copy."""
    store = TensorStore(path)
    host = copy_s = 0.0
    for name in store.names:
        start = time.perf_counter()
        t = store.read(name)
        host += time.perf_counter() - start
        if rec.dev.type != "cpu":
            start = time.perf_counter()
            t.to(rec.dev)
            torch.cuda.synchronize()
            copy_s += time.perf_counter() - start
    gb = path.stat().st_size / 1e9
    rec.add(model=tag, step="io_probe", item="read train store + copy to device", seconds=round(host + copy_s, 2),
            note=f"read {host:.2f}s ({gb / host:.2f} GB/s), copy {copy_s:.2f}s ({gb / max(copy_s, 1e-9):.1f} GB/s)")


def block_stats(train: Path, out: Path, device: str) -> None:
    """The block_stats rule's stage."""
    from inflbench.stages import stage_block_stats

    stage_block_stats({"train": str(train)}, {"stats": str(out)}, {"device": device})


def stats_vs_cpu(tag: str, train: Path, out: Path, rec: Recorder, n: int) -> None:
    """Block statistics of the small store on the device (kept at ``out``) and on the CPU, compared."""
    from inflbench.artifacts import load_block_stats

    cpu_out = out.with_name(out.stem + "_cpu.safetensors")
    secs = []
    for where, path in zip(wheres(rec.dev, rec.check_on_cpu), (out, cpu_out)):
        start = time.perf_counter()
        block_stats(train, path, where)
        secs.append(time.perf_counter() - start)
    if len(secs) == 2:
        got, ref = load_block_stats(out), load_block_stats(cpu_out)
        worst = max(compare(got.gram(k), ref.gram(k))[0] for k in ref.shapes)
        rec.add(model=tag, step="block_stats_vs_cpu", item=f"{len(ref.shapes)} Grams", n_train=n,
                seconds=round(secs[0], 3), max_rel_err=f"{worst:.2e}", note=f"cpu {secs[1]:.2f}s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/paper-glue.yaml"),
                    help="paper profile (model, train, methods)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=".")
    ap.add_argument("--n-train", type=int, default=4500)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--n-check", type=int, default=64, help="train samples of the small store (device vs CPU)")
    ap.add_argument("--n-finetune", type=int, default=256)
    ap.add_argument("--layers", type=int, default=None, help="encoder layers (default: the model's)")
    ap.add_argument("--decoder-layers", type=int, default=2, help="Llama-2-13B width decoder layers (0: skip)")
    ap.add_argument("--decoder-methods", nargs="*", default=DECODER_METHODS)
    ap.add_argument("--decoder-length", type=int, default=128, help="decoder sequence length")
    ap.add_argument("--encoder", action=argparse.BooleanOptionalAction, default=True, help="run the encoder part")
    ap.add_argument("--grad-seconds", type=float, default=60.0, help="cap on each paper-size gradients pass")
    ap.add_argument("--score-seconds", type=float, default=150.0, help="budget of the paper-size scoring")
    ap.add_argument("--ekfac", action=argparse.BooleanOptionalAction, default=True, help="EK-FAC (kronfluence)")
    ap.add_argument("--check-on-cpu", action="store_true", help="also compare when --device is cpu")
    ap.add_argument("--methods", nargs="*", help="entries to run (default: the profile's + variants, no ekfac)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    rec = Recorder(out, dev, args.check_on_cpu)
    cfg = yaml.safe_load(Path(args.config).read_text())
    rec.say(f"torch {torch.__version__}, device {dev}"
            + (f" ({torch.cuda.get_device_name()})" if dev.type == "cuda" else "")
            + f", threads {torch.get_num_threads()}, config {args.config}")
    methods = {k: v for k, v in {**cfg["methods"], **VARIANTS}.items()
               if not get(method_entry(k, v)[0]).needs_model}
    if args.methods:
        methods = {k: methods.get(k, {}) for k in args.methods}
    overrides = {"num_hidden_layers": args.layers} if args.layers else {}
    encoder = None
    if args.encoder:
        with tempfile.TemporaryDirectory() as tmp:
            encoder = run_model("roberta-large", cfg["model"], methods, args, rec, Path(tmp), overrides,
                                cfg["gradients"]["batch_size"], cfg["train"])
    if args.decoder_layers:
        small = argparse.Namespace(**{**vars(args), "n_train": 512, "n_test": 64, "n_finetune": 32,
                                      "n_check": 32, "grad_seconds": 20.0, "score_seconds": 40.0})
        with tempfile.TemporaryDirectory() as tmp:
            run_model("llama-2-13b-width", {**DECODER, "max_length": args.decoder_length},
                      {m: VARIANTS.get(m, {}) for m in args.decoder_methods}, small, rec, Path(tmp),
                      {"num_hidden_layers": args.decoder_layers, "vocab_size": 4096}, 8, {"lr": 1e-4, "batch_size": 8})
    if encoder and args.ekfac:  # last: its CPU side is the slowest check
        ekfac("roberta-large", *encoder, rec)
    rec.say("done")


if __name__ == "__main__":
    main()
