"""Linear-algebra solvers shared by the influence methods and the synthetic convergence study
(HyperINF section 4: error of ``M^{-1} v`` per iteration).

Everything here works on explicit matrices or matrix-vector products and knows nothing about blocks,
models or the method registry. One module per family:

``schulz``   ``schulz_inverse(A, *, iterations, x0="safe")``, ``schulz_apply(A, V, ...)`` (``X_N V`` without
             forming ``X_N``), ``schulz_apply_tracked`` (the same plus residual norms)
``lissa``    ``lissa_solve(matvec, v, *, damping, scale, depth, variant="correct")`` (LiSSA / Neumann)
``rrinf``    ``rrinf_sgd(train_blocks, target_blocks, *, damping, iterations, lr, ...)`` (RRInf eq. 5)
``krylov``   ``sor_solve``, ``cg_solve``, ``gmres_solve`` (classical iterative solvers)
``direct``   ``direct_solve(M, v)`` (float64 Cholesky, LU fallback), ``cholesky_solve``, ``datainf_apply``
``common``   ``sym_gram``, ``lower_gram_`` (its lower row tiles only, for a Cholesky), ``lambda_max_bound``,
             ``small_op_threads``, ``ThreadShares`` / ``thin_shares`` / ``read_twice`` (thin products, one
             share of the memory per thread)

Conventions: matrices may carry leading batch dimensions ``(..., d, d)``; right-hand sides are ``(..., d)``
or ``(..., d, k)`` (several columns).
"""

import importlib

# name -> submodule; imported on first use so that light jobs reading ``solvers.table`` skip torch
_LAZY = {
    "sym_gram": "common", "lower_gram_": "common", "lambda_max_bound": "common", "small_op_threads": "common",
    "ThreadShares": "common", "thin_shares": "common", "read_twice": "common",
    "cholesky_solve": "direct", "datainf_apply": "direct", "direct_solve": "direct",
    "lissa_increment_diverged": "lissa", "lissa_solve": "lissa",
    "RRInfSampling": "rrinf", "rrinf_sgd": "rrinf",
    "PUBLISHED_HYPERINF_X0": "schulz", "schulz_apply": "schulz", "schulz_apply_tracked": "schulz",
    "schulz_inverse": "schulz", "schulz_x0_scale": "schulz",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'inflbench.solvers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"inflbench.solvers.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
