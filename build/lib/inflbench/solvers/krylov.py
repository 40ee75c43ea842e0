"""Classical iterative solvers (SOR, CG, scipy GMRES), compared with the influence solvers in the synthetic study.

All take a callback ``callback(k, x_k)`` called after iteration k = 1..iterations, so the study records
the whole error curve from one run. Schulz, LiSSA/Neumann, DataInf and RRInf live in
the sibling modules of ``inflbench.solvers``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from scipy.sparse.linalg import gmres  # imported here so the first timed GMRES run does not pay for it

Callback = Callable[[int, torch.Tensor], None]


def sor_solve(M: torch.Tensor, b: torch.Tensor, *, omega: float, iterations: int, x0: torch.Tensor | None = None,
              literal_eq26: bool = False, callback: Callback | None = None) -> torch.Tensor:
    """Successive over-relaxation for M x = b.

    Textbook form with M = D + L + U (D diagonal, L/U strict lower/upper triangles of M):
    (D + omega L) x_{k+1} = omega b - (omega U + (omega - 1) D) x_k. For symmetric positive definite M it
    converges for every 0 < omega < 2.

    ``literal_eq26=True`` applies HyperINF eq. (26) with L, U taken as the strict triangles of M *without*
    the textbook minus signs: (D - omega L) x_{k+1} = (omega U + (1 - omega) D) x_k + omega b. Its fixed
    point solves (2D - M) x = b, so it is SOR on 2D - M rather than on M; kept to test whether that reading
    explains the divergence the paper reports.
    """
    D = torch.diag(torch.diagonal(M))
    L = torch.tril(M, diagonal=-1)
    U = torch.triu(M, diagonal=1)
    if literal_eq26:
        lower, upper, rhs = D - omega * L, omega * U + (1.0 - omega) * D, omega * b
    else:
        lower, upper, rhs = D + omega * L, -(omega * U + (omega - 1.0) * D), omega * b
    del D, L, U
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    for k in range(1, iterations + 1):
        x = torch.linalg.solve_triangular(lower, (upper @ x + rhs).unsqueeze(1), upper=False).squeeze(1)
        if callback is not None:
            callback(k, x)
    return x


def cg_solve(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, *, iterations: int,
             callback: Callback | None = None) -> torch.Tensor:
    """Conjugate gradient from x0 = 0; after exact convergence the iterate is held (callbacks continue)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = torch.dot(r, r)
    for k in range(1, iterations + 1):
        if rs > 0:
            Ap = matvec(p)
            curvature = torch.dot(p, Ap)
            if curvature > 0:
                alpha = rs / curvature
                x = x + alpha * p
                r = r - alpha * Ap
                rs_new = torch.dot(r, r)
                p = r + (rs_new / rs) * p
                rs = rs_new
            else:  # breakdown (only in exact convergence or an indefinite matrix): stop moving
                rs = torch.zeros_like(rs)
        if callback is not None:
            callback(k, x)
    return x


def gmres_solve(M: torch.Tensor, b: torch.Tensor, *, iterations: int, restart: int,
                callback: Callback | None = None) -> torch.Tensor:
    """scipy GMRES(restart) from x0 = 0; one iteration is one restart cycle (scipy's per-iterate callback).

    The tolerances are zero so every cycle runs; if scipy stops early (exact convergence or breakdown) the
    last iterate is reported for the remaining iterations.
    """
    A = M.numpy()
    rhs = b.numpy()
    seen: list[np.ndarray] = []

    def on_cycle(xk: np.ndarray) -> None:
        seen.append(xk)
        if callback is not None:
            callback(len(seen), torch.from_numpy(np.array(xk, dtype=rhs.dtype)))

    x, _info = gmres(A, rhs, x0=np.zeros_like(rhs), rtol=0.0, atol=0.0, restart=restart, maxiter=iterations,
                     callback=on_cycle, callback_type="x")
    x = torch.from_numpy(np.asarray(x, dtype=rhs.dtype))
    for k in range(len(seen) + 1, iterations + 1):
        if callback is not None:
            callback(k, x)
    return x
