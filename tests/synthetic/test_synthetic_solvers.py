"""Every solver's error curve on a small well-conditioned problem, against the float64 direct solve."""
import math

import pytest
import torch

from inflbench import solvers as shared
from inflbench.studies.synthetic.config import CLOSED_FORM_SOLVERS, cell_params, validate_config
from inflbench.solvers.krylov import cg_solve, gmres_solve, sor_solve
from inflbench.studies.synthetic.matrices import make_problem
from inflbench.studies.synthetic.runner import COLUMNS, run_cell

# d = 40, N = 400, N(0, 1): spectrum within about [0.5, 1.8], so even the unscaled Neumann series converges.
WELL = dict(distribution="normal_0_1", d=40, n=400, seed=0)


@pytest.fixture(scope="module")
def well_conditioned():
    cfg = validate_config({"dims": [40], "n_samples": [400], "dtype": "float64", "iterations": 40,
                           "rrinf": {"lr": 0.05, "batch_size": 1}, "table": {"iteration": 20}})
    table, meta = run_cell(cell_params(cfg), WELL["distribution"], WELL["d"], WELL["n"], WELL["seed"])
    return cfg, table, meta


def test_table_shape(well_conditioned):
    cfg, table, meta = well_conditioned
    assert list(table.columns) == COLUMNS
    for solver, g in table.groupby("solver"):
        if solver in CLOSED_FORM_SOLVERS:
            assert list(g["iteration"]) == [0]
        else:
            assert list(g["iteration"]) == list(range(1, cfg["iterations"] + 1))
            assert (g["seconds"].diff().dropna() >= 0).all()  # cumulative solver time
    assert meta["lambda_max"] < 2.0 and meta["lambda_min"] > 0.3
    assert table["rel_error"].equals(table["error"] / meta["ref_norm"])
    # whole-cell cost: at least the sum of the solvers' wall times; CPU time recorded for shared machines
    assert meta["cell_wall_seconds"] >= sum(s["wall_seconds"] for s in meta["solvers"].values())
    assert meta["cell_cpu_seconds"] > 0


@pytest.mark.parametrize("solver, tol", [
    ("schulz_paper", 1e-8), ("schulz_safe", 1e-10), ("neumann", 1e-4), ("neumann_safe", None),
    ("sor_0.5", 1e-4), ("sor_1.5", 1e-6), ("cg", 1e-10), ("gmres", 1e-10),
    ("direct", 1e-12), ("cholesky", 1e-12), ("inverse", 1e-12),
])
def test_error_curve_goes_to_zero(well_conditioned, solver, tol):
    _cfg, table, _meta = well_conditioned
    rel = table[table["solver"] == solver]["rel_error"].to_numpy()
    assert all(math.isfinite(x) for x in rel)
    if solver in CLOSED_FORM_SOLVERS:
        assert rel[0] < tol
        return
    assert rel[-1] < rel[0]
    if tol is None:  # the slow safe-scaled series: a clear decrease is enough
        assert rel[-1] < 0.5 * rel[0]
    else:
        assert rel[-1] < tol


def test_full_inverse_errors(well_conditioned):
    _cfg, table, _meta = well_conditioned
    for solver in ("schulz_paper", "schulz_safe", "inverse"):
        fro = table[table["solver"] == solver]["fro_error"].to_numpy()
        assert fro[-1] < 1e-8
    assert table[table["solver"] == "cg"]["fro_error"].isna().all()


def test_stochastic_lissa_decreases_with_a_safe_scale():
    cfg = validate_config({"dims": [40], "n_samples": [400], "dtype": "float64", "solvers": ["lissa"],
                           "lissa": {"scale": 3.0, "batch_size": 200}})
    table, _meta = run_cell(cell_params(cfg), "normal_0_1", 40, 400, 0)
    rel = table["rel_error"].to_numpy()
    assert all(math.isfinite(x) for x in rel) and rel[-1] < 0.5 * rel[0]  # stochastic HVPs: a noise floor


def test_rrinf_decreases_and_mapping_is_exact(well_conditioned):
    _cfg, table, meta = well_conditioned
    first_last = {}
    for solver in ("rrinf_sgd", "rrinf_sgd_corrected"):
        rel = table[table["solver"] == solver]["rel_error"].to_numpy()
        assert all(math.isfinite(x) for x in rel) and rel[-1] < rel[0]
        first_last[solver] = (rel[0], rel[-1])
    assert first_last["rrinf_sgd_corrected"][1] < 0.2 * first_last["rrinf_sgd_corrected"][0]
    # the omega -> M^{-1} v mapping used by the runner is exact at the ridge solution
    p = make_problem("normal_0_1", 30, 12, 1, 0.01)
    x_star = shared.direct_solve(p.M, p.v)
    omega_star = p.S @ x_star / p.n  # = Phi^T (Phi Phi^T + N lambda I)^{-1} v with Phi = S^T
    assert torch.allclose((p.v - p.S.T @ omega_star) / p.damping, x_star, rtol=1e-9, atol=1e-9)


def test_rrinf_corrected_approaches_ridge_solution_when_rows_dominate():
    # d >> N (many equations per unknown); a small constant step keeps SGD's noise floor low
    cfg = validate_config({"dims": [400], "n_samples": [10], "dtype": "float64", "iterations": 40,
                           "solvers": ["rrinf_sgd_corrected"], "rrinf": {"lr": 0.002, "batch_size": 1}})
    table, meta = run_cell(cell_params(cfg), "normal_0_1", 400, 10, 0)
    assert meta["solvers"]["rrinf_sgd_corrected"]["omega_rel_error"] < 0.3  # omega starts at 0: error 1
    rel = table["rel_error"].to_numpy()
    assert rel[-1] < 0.5 * rel[0]


def test_datainf_is_exact_for_one_sample():
    p = make_problem("normal_0_1", 25, 1, 0, 0.01)
    assert torch.allclose(shared.datainf_apply(p.S, p.v, 0.01), shared.direct_solve(p.M, p.v), rtol=1e-8)


def test_schulz_from_safe_x0_converges_where_paper_x0_cannot():
    # lambda_max ~ 0.25 * d = 1600 for U(0, 1) entries: X0 = 5e-3 * I violates c < 2 / lambda_max
    cfg = validate_config({"dims": [6400 // 100], "n_samples": [50], "distributions": ["uniform_0_1"],
                           "dtype": "float64", "solvers": ["schulz_paper", "schulz_safe"], "schulz_x0": 0.5})
    table, meta = run_cell(cell_params(cfg), "uniform_0_1", 64, 50, 0)
    assert 0.5 > 2 / meta["lambda_max"]
    paper = table[table["solver"] == "schulz_paper"]["rel_error"].to_numpy()
    safe = table[table["solver"] == "schulz_safe"]["rel_error"].to_numpy()
    assert not (paper[-1] < 1e-3)  # diverged (non-finite) or far off
    assert safe[-1] < 1e-8


def test_sor_literal_eq26_targets_2d_minus_m():
    p = make_problem("normal_0_1", 20, 2000, 0, 0.01)  # M close to I: 2D - M is also well conditioned
    x = sor_solve(p.M, p.v, omega=1.0, iterations=200, literal_eq26=True)
    target = torch.linalg.solve(2 * torch.diag(torch.diagonal(p.M)) - p.M, p.v)
    assert torch.allclose(x, target, rtol=1e-8, atol=1e-8)


def test_cg_and_gmres_hold_after_convergence():
    p = make_problem("normal_0_1", 10, 100, 0, 0.01)
    seen_cg, seen_gm = [], []
    cg_solve(lambda x: p.M @ x, p.v, iterations=30, callback=lambda k, x: seen_cg.append((k, x)))
    gmres_solve(p.M, p.v, iterations=30, restart=20, callback=lambda k, x: seen_gm.append((k, x)))
    x_star = torch.linalg.solve(p.M, p.v)
    for seen in (seen_cg, seen_gm):
        assert [k for k, _ in seen] == list(range(1, 31))
        assert torch.allclose(seen[-1][1].to(torch.float64), x_star, rtol=1e-8, atol=1e-8)
