"""One cell of the study: build (M, v), run every configured solver once, record the error curve.

Errors are ||M^{-1} v - x_k||_2 against a float64 reference (``inflbench.solvers.direct_solve``) and, for
solvers that form a full inverse, ||M^{-1} - X_k||_F against a float64 inverse. ``seconds`` is the solver's
cumulative wall time up to iteration k; the time spent measuring errors inside callbacks is excluded.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd
import torch

from inflbench import solvers as shared
from inflbench.solvers.krylov import cg_solve, gmres_solve, sor_solve
from inflbench.solvers.table import CLOSED_FORM_SOLVERS, FULL_INVERSE_SOLVERS, sor_omega
from inflbench.studies.synthetic.matrices import Problem, cell_seed, make_problem, spectrum_bounds

COLUMNS = ["distribution", "d", "N", "seed", "solver", "iteration", "error", "seconds", "fro_error", "rel_error"]
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Context:
    """Working-precision copies of the problem plus the float64 references."""

    problem: Problem
    params: dict
    dtype: torch.dtype
    M: torch.Tensor
    v: torch.Tensor
    S: torch.Tensor
    x_ref: torch.Tensor
    inv_ref: torch.Tensor | None
    seed: int
    info: dict = field(default_factory=dict)

    @property
    def damping(self) -> float:
        return self.problem.damping

    def vec_error(self, x: torch.Tensor) -> float:
        return float(torch.linalg.vector_norm(x.to(torch.float64) - self.x_ref))

    def fro_error(self, X: torch.Tensor) -> float:
        if self.inv_ref is None:
            return math.nan
        return float(torch.linalg.matrix_norm(X.to(torch.float64) - self.inv_ref))


class Recorder:
    """Callback that records (iteration, error, Frobenius error, solver seconds) per call."""

    def __init__(self, evaluate: Callable[[torch.Tensor], tuple[float, float]]):
        self.evaluate = evaluate
        self.rows: list[tuple[int, float, float, float]] = []
        self.t0 = time.perf_counter()
        self.excluded = 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.excluded = 0.0

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0 - self.excluded

    def __call__(self, _k: int, estimate: torch.Tensor) -> None:
        t_in = time.perf_counter()
        seconds = t_in - self.t0 - self.excluded
        err, fro = self.evaluate(estimate)
        self.rows.append((len(self.rows) + 1, err, fro, seconds))
        self.excluded += time.perf_counter() - t_in


# --------------------------------------------------------------------------- solver adapters
# Each adapter runs one solver with ``rec`` as its per-iteration callback (vector estimates of M^{-1} v
# unless it is a full-inverse solver) and returns extra facts for the cell metadata.


def _schulz(ctx: Context, rec: Recorder, x0) -> dict:
    v = ctx.v

    def evaluate(X):
        return ctx.vec_error(X @ v), ctx.fro_error(X)

    rec.evaluate = evaluate
    rec.start()
    shared.schulz_inverse(ctx.M, iterations=ctx.params["iterations"], x0=x0, callback=rec)
    return {"x0_scale": float(shared.schulz_x0_scale(ctx.M, x0))}


def _lissa(ctx: Context, rec: Recorder, *, stochastic: bool, safe_scale: bool = False) -> dict:
    opts = ctx.params["lissa"]
    M, S, lam = ctx.M, ctx.S, ctx.damping
    if stochastic:
        gen = torch.Generator().manual_seed(ctx.seed + 1)
        batch = min(opts["batch_size"], S.shape[0])

        def matvec(x):  # G_b x with a fresh mini-batch of s_i each step (LiSSA's stochastic HVP)
            rows = S[torch.randint(0, S.shape[0], (batch,), generator=gen)]
            return rows.T @ (rows @ x) / batch
    else:
        def matvec(x):  # G x = (M - lambda I) x
            return M @ x - lam * x

    rec.evaluate = lambda x: (ctx.vec_error(x), math.nan)
    rec.start()
    scale = float(shared.lambda_max_bound(M)) if safe_scale else opts["scale"]
    _, diverged = shared.lissa_solve(matvec, ctx.v, damping=lam, scale=scale, depth=ctx.params["iterations"],
                                     callback=rec, variant=opts["variant"])
    return {"scale": scale, "diverged_flag": bool(diverged)}


def _sor(ctx: Context, rec: Recorder, name: str) -> dict:
    omega, literal = sor_omega(name)
    rec.evaluate = lambda x: (ctx.vec_error(x), math.nan)
    rec.start()
    sor_solve(ctx.M, ctx.v, omega=omega, iterations=ctx.params["iterations"], x0=ctx.params["schulz_x0"] * ctx.v,
              literal_eq26=literal, callback=rec)
    return {"omega": omega, "literal_eq26": literal}


def _cg(ctx: Context, rec: Recorder) -> dict:
    rec.evaluate = lambda x: (ctx.vec_error(x), math.nan)
    M = ctx.M
    rec.start()
    cg_solve(lambda p: M @ p, ctx.v, iterations=ctx.params["iterations"], callback=rec)
    return {}


def _gmres(ctx: Context, rec: Recorder) -> dict:
    rec.evaluate = lambda x: (ctx.vec_error(x), math.nan)
    rec.start()
    gmres_solve(ctx.M, ctx.v, iterations=ctx.params["iterations"], restart=ctx.params["gmres"]["restart"],
                callback=rec)
    return {"restart": ctx.params["gmres"]["restart"]}


def _rrinf(ctx: Context, rec: Recorder, variant: str) -> dict:
    """RRInf eq. (5) on the ridge problem with Phi = S^T, targets v; M^{-1} v = (v - Phi omega) / lambda."""
    opts = ctx.params["rrinf"]
    S, v, lam = ctx.S, ctx.v, ctx.damping
    # Same values as S, stored as Phi = S^T row-major: each sampled parameter row phi_iota is contiguous
    # (the shared solver reads columns of its sample-major argument). Layout only, outside the timing.
    S_rows = S.T.contiguous().T
    d = S.shape[1]
    per_epoch = max(1, math.ceil(d / opts["batch_size"]))
    epochs = ctx.params["iterations"]

    def to_solution(omega):  # omega (N, 1) -> estimate of M^{-1} v
        return (v - S.T @ omega[:, 0]) / lam

    rec.evaluate = lambda omega: (ctx.vec_error(to_solution(omega)), math.nan)

    def on_step(k, omega):
        if k % per_epoch == 0:
            rec(k // per_epoch, omega)

    rec.start()
    omega = shared.rrinf_sgd([S_rows], [v.unsqueeze(0)], damping=lam, iterations=epochs * per_epoch, lr=opts["lr"],
                     sampling="neuron", batch_size=opts["batch_size"], seed=ctx.seed + 2, variant=variant,
                     dtype=ctx.dtype, callback=on_step)
    # the quantity RRInf is built for: omega* = Phi^T (Phi Phi^T + N lambda I)^{-1} v = S M^{-1} v / N
    omega_ref = ctx.problem.S @ ctx.x_ref / ctx.problem.n
    omega_err = torch.linalg.vector_norm(omega[:, 0].to(torch.float64) - omega_ref)
    return {"steps_per_epoch": per_epoch, "omega_rel_error": float(omega_err / torch.linalg.vector_norm(omega_ref))}


def _closed_form(ctx: Context, name: str) -> tuple[float, float, float]:
    """(error, fro_error, seconds) of a one-shot solver."""
    M, v, S = ctx.M, ctx.v, ctx.S
    t0 = time.perf_counter()
    X = None
    if name == "direct":
        x = torch.linalg.solve(M, v)
    elif name == "cholesky":
        L = torch.linalg.cholesky(M)
        x = torch.cholesky_solve(v.unsqueeze(1), L).squeeze(1)
    elif name == "inverse":
        X = torch.linalg.inv(M)
        x = X @ v
    elif name == "datainf":
        x = shared.datainf_apply(S, v, ctx.damping)
    else:  # pragma: no cover - guarded by the config validator
        raise ValueError(name)
    seconds = time.perf_counter() - t0
    return ctx.vec_error(x), (ctx.fro_error(X) if X is not None else math.nan), seconds


#: the study's adapter of each iterative solver of ``inflbench.solvers.table`` (SOR: by pattern)
ADAPTERS: dict[str, Callable] = {
    "schulz_paper": lambda ctx, rec: _schulz(ctx, rec, float(ctx.params["schulz_x0"])),
    "schulz_safe": lambda ctx, rec: _schulz(ctx, rec, "safe"),
    "lissa": lambda ctx, rec: _lissa(ctx, rec, stochastic=True),
    "neumann": lambda ctx, rec: _lissa(ctx, rec, stochastic=False),
    "neumann_safe": lambda ctx, rec: _lissa(ctx, rec, stochastic=False, safe_scale=True),
    "cg": _cg,
    "gmres": _gmres,
    "rrinf_sgd": lambda ctx, rec: _rrinf(ctx, rec, "published"),
    "rrinf_sgd_corrected": lambda ctx, rec: _rrinf(ctx, rec, "correct"),
}


def _run_iterative(ctx: Context, name: str, rec: Recorder) -> dict:
    if name in ADAPTERS:
        return ADAPTERS[name](ctx, rec)
    if sor_omega(name) is not None:
        return _sor(ctx, rec, name)
    raise ValueError(f"unknown solver {name!r}")  # pragma: no cover - guarded by the config validator


def _warm_up(dtype: torch.dtype) -> None:
    """First BLAS/LAPACK calls pay one-off set-up costs; keep them out of the first solver's time."""
    a = torch.randn(64, 64, dtype=dtype)
    a = a @ a.T + 64 * torch.eye(64, dtype=dtype)
    torch.linalg.solve(a, a[0])
    torch.linalg.cholesky(a)
    torch.linalg.inv(a)


def run_cell(params: dict, distribution: str, d: int, n: int, seed: int,
             log: Callable[[str], None] = lambda _m: None) -> tuple[pd.DataFrame, dict]:
    """Run all solvers of ``params`` (``config.cell_params``) on one cell; returns (tidy rows, metadata)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    t0 = time.perf_counter()
    problem = make_problem(distribution, d, n, seed, params["damping"])
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    x_ref = shared.direct_solve(problem.M, problem.v)
    t_ref = time.perf_counter() - t0
    needs_inverse = any(s in FULL_INVERSE_SOLVERS for s in params["solvers"])
    inv_ref = torch.linalg.inv(problem.M) if needs_inverse else None
    lam_min, lam_max = spectrum_bounds(problem.M)
    dtype = _DTYPES[params["dtype"]]
    ctx = Context(problem=problem, params=params, dtype=dtype, M=problem.M.to(dtype), v=problem.v.to(dtype),
                  S=problem.S.to(dtype), x_ref=x_ref, inv_ref=inv_ref, seed=cell_seed(distribution, d, n, seed))
    ref_norm = float(torch.linalg.vector_norm(x_ref))
    meta = {
        "distribution": distribution, "d": d, "N": n, "seed": seed, "dtype": params["dtype"],
        "damping": params["damping"], "lambda_min": lam_min, "lambda_max": lam_max,
        "lambda_max_bound": float(shared.lambda_max_bound(problem.M)), "condition": lam_max / lam_min,
        "ref_norm": ref_norm, "inv_ref_fro": float(torch.linalg.matrix_norm(inv_ref)) if needs_inverse else math.nan,
        "build_seconds": t_build, "reference_seconds": t_ref, "threads": torch.get_num_threads(), "solvers": {},
    }
    _warm_up(dtype)
    rows = []
    for name in params["solvers"]:
        t_solver = time.perf_counter()
        if name in CLOSED_FORM_SOLVERS:
            err, fro, seconds = _closed_form(ctx, name)
            rows.append((distribution, d, n, seed, name, 0, err, seconds, fro, err / ref_norm))
            extra = {}
        else:
            rec = Recorder(lambda x: (math.nan, math.nan))
            extra = _run_iterative(ctx, name, rec)
            last = rec.rows[-1] if rec.rows else (0, math.nan, math.nan, rec.elapsed())
            got = len(rec.rows)
            for k in range(got + 1, params["iterations"] + 1):  # stopped early (e.g. non-finite): pad
                rec.rows.append((k, math.nan, math.nan, last[3]))
            extra["iterations_run"] = got
            rows.extend((distribution, d, n, seed, name, k, e, s, f, e / ref_norm) for k, e, f, s in rec.rows)
        meta["solvers"][name] = {**extra, "wall_seconds": time.perf_counter() - t_solver}
        log(f"{distribution} d={d} N={n} seed={seed} {name}: final error {rows[-1][6]:.3e} "
            f"({time.perf_counter() - t_solver:.2f}s wall)")
    # whole cell, set-up included: CPU time (all threads) is robust to other load on a shared machine
    meta["cell_wall_seconds"] = time.perf_counter() - wall0
    meta["cell_cpu_seconds"] = time.process_time() - cpu0
    meta["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return pd.DataFrame(rows, columns=COLUMNS), meta
