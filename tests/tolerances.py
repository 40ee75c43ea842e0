"""All numerical tolerances of the method and solver tests, in one place.

``rtol`` is relative to the element, ``atol`` is relative to the largest
absolute value of the expected array (see :func:`assert_close`).
"""

from __future__ import annotations

import torch

TOL: dict[str, dict[str, float]] = {
    # float64 method vs explicit float64 loop reference
    "float64_reference": {"rtol": 1e-8, "atol": 1e-10},
    # float32 computation vs float64 reference (closed forms: tracin, cosine)
    "float32_reference": {"rtol": 1e-4, "atol": 1e-5},
    # float32 closed forms that lose digits to cancellation (datainf with lambda << ||g||^2)
    "float32_cancelling": {"rtol": 2e-3, "atol": 1e-3},
    # permutation invariance (only summation order changes)
    "permutation": {"rtol": 1e-6, "atol": 1e-8},
    # splitting blocks / summing blocks
    "block_sum": {"rtol": 1e-8, "atol": 1e-10},
    # DataInf with one training sample == exact (Sherman-Morrison), float64
    "datainf_single_sample": {"rtol": 1e-8, "atol": 1e-10},
    # Schulz iteration -> exact inverse on well-conditioned blocks (issue: rtol 1e-5)
    "schulz_exact": {"rtol": 1e-5, "atol": 1e-7},
    # Schulz in float32 on well-conditioned blocks
    "schulz_float32": {"rtol": 1e-3, "atol": 1e-4},
    # LiSSA with enough depth -> exact_block (float64)
    "lissa_exact": {"rtol": 1e-5, "atol": 1e-7},
    # LiSSA default float32 at enough depth
    "lissa_float32": {"rtol": 1e-2, "atol": 1e-3},
    # RRInf full gradient descent -> exact_joint (float64)
    "rrinf_full_exact": {"rtol": 1e-5, "atol": 1e-7},
    # scale invariance of damped methods (float64)
    "scale_invariance": {"rtol": 1e-6, "atol": 1e-8},
    # scale invariance in float32 across 1e-4 .. 1e2
    "scale_invariance_float32": {"rtol": 5e-2, "atol": 5e-3},
    # solvers on explicit matrices (float64)
    "solver_float64": {"rtol": 1e-9, "atol": 1e-11},
    # stochastic RRInf must at least correlate with the exact estimand (Pearson)
    "rrinf_stochastic_min_corr": {"value": 0.8},
    # EK-FAC vs exact damped Fisher (damping 1e-2) on a tiny MLP (Pearson correlation of scores)
    "ekfac_min_corr": {"value": 0.9},
    # EK-FAC stage at damping 1e5 vs -g.g/1e5 from the stored gradients (float32 kronfluence scores)
    "ekfac_large_damping_rel": {"value": 1e-4},
}


def assert_close(actual, expected, key: str, msg: str = "") -> None:
    """``torch.testing.assert_close`` with tolerances ``TOL[key]`` (atol scaled by max|expected|)."""
    t = TOL[key]
    a = torch.as_tensor(actual).to(torch.float64)
    e = torch.as_tensor(expected).to(torch.float64)
    atol = t["atol"] * float(e.abs().max()) if e.numel() else 0.0
    torch.testing.assert_close(a, e, rtol=t["rtol"], atol=atol, msg=(lambda m: f"{key}: {msg}\n{m}"))
