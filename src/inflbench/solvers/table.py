"""The one table of solver variants the synthetic study compares, each tied to the solver function it runs and
to the registered influence method (``inflbench.methods``) that uses the same solver, if any.

The synthetic study loops over this table (config check, dispatch in ``studies.synthetic.runner``, labels of
its figures); SOR variants are patterns (``sor_<omega>``, ``sor_eq26_<omega>``) and resolved by ``entry``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SolverEntry:
    name: str
    #: one-line description (config errors, docs)
    description: str
    #: figure label
    label: str
    #: the function in ``inflbench.solvers`` (or torch) that does the work
    function: str
    #: ``iterative`` (an error per iteration) or ``closed_form`` (one row, iteration 0)
    kind: str = "iterative"
    #: forms a full approximate inverse (also gets a Frobenius error)
    full_inverse: bool = False
    #: the influence method of the registry built on this solver
    method: str | None = None


SOLVERS: dict[str, SolverEntry] = {e.name: e for e in (
    SolverEntry("schulz_paper", "Schulz X_{k+1}=X_k(2I-MX_k) from the paper's X0 = schulz_x0*I",
                "HyperINF / Schulz (paper X0)", "schulz.schulz_inverse", full_inverse=True, method="hyperinf"),
    SolverEntry("schulz_safe", "Schulz from X0 = I/c, c an upper bound of lambda_max(M)", "Schulz (safe X0)",
                "schulz.schulz_inverse", full_inverse=True, method="hyperinf"),
    SolverEntry("lissa", "LiSSA recursion with stochastic mini-batch Hessian-vector products", "LiSSA",
                "lissa.lissa_solve", method="lissa"),
    SolverEntry("neumann", "Neumann series (LiSSA recursion with the exact Hessian-vector product)",
                "Neumann series", "lissa.lissa_solve", method="lissa"),
    SolverEntry("neumann_safe", "Neumann series with scale = upper bound of lambda_max(M) (convergent control)",
                "Neumann (safe scale)", "lissa.lissa_solve", method="lissa"),
    SolverEntry("datainf", "DataInf reversed-order (Sherman-Morrison) closed form", "DataInf",
                "direct.datainf_apply", kind="closed_form", method="datainf"),
    SolverEntry("cg", "conjugate gradient", "CG", "krylov.cg_solve"),
    SolverEntry("gmres", "scipy GMRES(restart); one iteration = one restart cycle", "GMRES (restart cycles)",
                "krylov.gmres_solve"),
    SolverEntry("rrinf_sgd", "RRInf eq. (5) normalised SGD on the ridge problem, verbatim; one iteration = one epoch",
                "RRInf SGD (eq. 5)", "rrinf.rrinf_sgd", method="rrinf"),
    SolverEntry("rrinf_sgd_corrected", "RRInf normalised SGD with norm-proportional row sampling (unbiased fixed point)",
                "RRInf SGD (corrected)", "rrinf.rrinf_sgd", method="rrinf"),
    SolverEntry("direct", "LU solve of M x = v in the working dtype", "direct (LU)", "torch.linalg.solve",
                kind="closed_form"),
    SolverEntry("cholesky", "Cholesky factorisation + triangular solves in the working dtype", "Cholesky",
                "torch.cholesky_solve", kind="closed_form", method="exact_block"),
    SolverEntry("inverse", "explicit inverse (torch.linalg.inv) times v in the working dtype", "explicit inverse",
                "torch.linalg.inv", kind="closed_form", full_inverse=True),
)}

#: ``sor_<omega>``: textbook SOR (M = D + L + U). ``sor_eq26_<omega>``: HyperINF eq. (26) read literally
#: with L, U the strict triangles of M (it iterates towards (2D - M)^{-1} v, not M^{-1} v).
SOR_PATTERN = re.compile(r"^sor(_eq26)?_(\d+(?:\.\d+)?)$")


def sor_omega(name: str) -> tuple[float, bool] | None:
    """(omega, literal_eq26) for an SOR solver name, else None."""
    m = SOR_PATTERN.match(name)
    return (float(m.group(2)), m.group(1) is not None) if m else None


def entry(name: str) -> SolverEntry | None:
    """The table entry of a solver name (SOR patterns included), or None."""
    if name in SOLVERS:
        return SOLVERS[name]
    sor = sor_omega(name)
    if sor is None:
        return None
    omega, literal = sor
    label = f"SOR eq. 26 literal (ω={name.split('_')[-1]})" if literal else f"SOR (ω={name.split('_')[-1]})"
    return SolverEntry(name, "successive over-relaxation", label, "krylov.sor_solve")


CLOSED_FORM_SOLVERS = tuple(n for n, e in SOLVERS.items() if e.kind == "closed_form")
FULL_INVERSE_SOLVERS = tuple(n for n, e in SOLVERS.items() if e.full_inverse)
