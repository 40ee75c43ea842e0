"""RRInf (ridge-regression influence): eq. (5) normalised SGD, Remark 2 multi-test form.

Estimand: ``exact_joint`` (whole-model damped Fisher, one lambda). The ridge
problem ``min (1/d)||Phi Omega - Upsilon||^2 + (n lambda/d)||Omega||^2`` with
``Phi`` the d x n matrix of training gradients and ``Upsilon = -n T^T`` (one
column per test sample) has the influence-score matrix as its minimiser
(Theorem 1); see ``solvers.rrinf_sgd`` for the steps and sampling modes.
Blocks are read in place (never concatenated); from a lazy store (scoring) each block is read when a step
uses it, so the whole store is never resident. Peak (bytes, C = n_target): Omega and its update
``3 * 8 n C``, the Gram cache ``min(GRAM_CACHE_BYTES, blocks * 8 n^2)`` plus ``8 n C`` per cached Gram,
one train and one target block with their float64 casts ``12 (n + C) d_max``, and the row norms ``8 d``
(correct neuron / minibatch sampling).

``variant="correct"`` (default) samples rows / blocks proportionally to their
squared norm so the normalised step is unbiased and the fixed point is the
ridge solution; ``variant="published"`` is eq. (5) verbatim (uniform sampling),
whose fixed point is a row-reweighted ridge problem. The RRInf notebooks run
``variant="published", sampling="neuron", iterations=1000``, which touches
under 0.3% of a RoBERTa-large LoRA model's parameters (``meta["touched_fraction"]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._common import BlockList, GradData, compute_dtype, damping_meta, joint_damping
from ._health import RIDGE_TOL, convergence_meta, reweighted_ridge_residual, ridge_residual
from ._registry import DTYPES, DampedParams, InfluenceResult, check_choice, check_damping, check_int, check_pos_float, register
from ..progress import iteration_progress
from ..solvers import rrinf_sgd

#: Gram matrices cached by the layer / full modes (n x n per block).
GRAM_CACHE_BYTES = 2 << 30

SAMPLING = ("neuron", "minibatch", "layer", "full")


@dataclass(frozen=True)
class RRInfParams(DampedParams):
    sampling: str = field(
        default="layer",
        metadata={
            "help": "'neuron': batch_size parameter rows per step (paper, RoBERTa/LLMs: 1); 'minibatch': batch_size rows "
            "per step (RRInf_mb); 'layer': one block per step (paper, diffusion); 'full': gradient descent."
        },
    )
    iterations: int = field(default=1000, metadata={"help": "Number of steps (paper: 1000 neuron steps for LLMs, 2000 layer steps for diffusion)."})
    lr: float = field(
        default=0.5,
        metadata={
            "help": "Learning rate eta of eq. (5); stable for any lr < 1 because steps are normalised. The paper uses "
            "0.01, which after 1000 steps leaves the iterate close to a rescaled TracIn (see docs/methods.md)."
        },
    )
    batch_size: int | None = field(default=None, metadata={"help": "|D_t| rows per step for neuron / minibatch (None: 1 / 64)."})
    seed: int = field(default=0, metadata={"help": "Random seed of the row / block sampling."})
    variant: str = field(
        default="correct",
        metadata={"help": "'correct' (norm-proportional sampling, unbiased, converges to exact_joint) or 'published' (eq. (5) verbatim)."},
    )
    dtype: str = field(default="auto", metadata={"help": "Compute dtype: 'auto' (float64 if inputs are float64, else float32), 'float32', 'float64'."})

    def __post_init__(self):
        check_damping(self.damping, allow_mapping=False)
        check_choice("sampling", self.sampling, SAMPLING)
        check_int("iterations", self.iterations, 1)
        check_pos_float("lr", self.lr, upper=1.0)
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, 1)
        check_int("seed", self.seed, 0)
        check_choice("variant", self.variant, ("correct", "published"))
        check_choice("dtype", self.dtype, DTYPES)


def _shared_grams(data: GradData):
    """Block index -> loader of the shared n x n Gram, for the blocks whose statistics hold it."""
    st = data.stats
    if st is None:
        return None
    return {b: (lambda k=k: st.gram(k)) for b, k in enumerate(data.names) if st.side(k) == "n"}


@register(
    "rrinf",
    params=RRInfParams,
    couples_blocks=True,
    block_stats=True,
    summary="RRInf normalised SGD on the whole-model ridge problem (converges to exact_joint)",
)
def rrinf(data: GradData, p: RRInfParams) -> InfluenceResult:
    dt = compute_dtype(p.dtype, data)
    lam = joint_damping(p.damping, data)
    bs = p.batch_size if p.batch_size is not None else (64 if p.sampling == "minibatch" else 1)
    stats: dict = {}
    names = data.names
    omega = rrinf_sgd(
        BlockList(data.train, names),
        BlockList(data.test, names),
        damping=float(lam),
        iterations=p.iterations,
        lr=p.lr,
        sampling=p.sampling,
        batch_size=bs,
        seed=p.seed,
        variant=p.variant,
        dtype=dt,
        gram_cache_bytes=GRAM_CACHE_BYTES,
        target_scale=-float(data.n),
        stats=stats,
        grams=_shared_grams(data),
        block_sq=[float(data.train_sq[k].sum()) for k in names],  # the norms the damping rule used
        callback=iteration_progress("RRInf", p.iterations),
    )
    out = InfluenceResult(meta={**damping_meta(lam), "touched_fraction": float(stats.get("touched_fraction", float("nan")))})
    out["total"] = omega
    train, test = BlockList(data.train, names), BlockList(data.test, names)  # read block by block
    if p.variant == "correct":
        residual = ridge_residual(train, test, omega, float(lam), stats.pop("gram_terms", None))
        out.meta.update(convergence_meta({"total": residual}, RIDGE_TOL, "ridge residual", "raise iterations"))
    else:  # the published update's own fixed point: a row-reweighted ridge solution
        sizes = [data.dim(k) for k in names]
        weights = [sum(sizes) / (len(sizes) * s) for s in sizes] if p.sampling == "layer" else [1.0] * len(sizes)
        residual = reweighted_ridge_residual(train, test, omega, float(lam), weights)
        out.meta.update(convergence_meta({"total": residual}, RIDGE_TOL, "reweighted ridge residual",
                                         "raise iterations (or lr)"))
    return out
