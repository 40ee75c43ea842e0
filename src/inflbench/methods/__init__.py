"""Influence-estimation methods behind one registry and one output contract.

Contract
--------
``compute_influence(method, train, test, **params) -> InfluenceResult``

* ``train`` / ``test`` map a block name (one LoRA matrix of one layer, or the
  head) to per-sample gradients ``(n, *param_shape)``; 2-D LoRA matrices keep
  their matrix shape. Both must have the same blocks.
* The result (a ``dict`` subclass with a ``.meta`` side channel) maps block ->
  ``(n_train, n_test)`` float64 scores; methods that couple blocks
  (``get(name).couples_blocks``) return the single key ``"total"``. Summing the
  blocks gives the total.
* ``available()`` lists method names; ``get(name)`` gives its
  :class:`MethodSpec` (``params_cls``, ``couples_blocks``, ``needs_model``);
  unknown names and bad parameters raise ``ValueError`` naming the valid choices.

Sign convention (written once, here)
------------------------------------
``score(i, j) = -g_test_j^T H^{-1} g_train_i`` -- RRInf eq. (2), the derivative
of test sample j's loss with respect to up-weighting training sample i.
**Positive = harmful**: up-weighting the training sample increases that test
sample's loss; negative = helpful. ``H`` is the damped Fisher/GGN
``G + lambda I`` with ``G = (1/n) sum_i g_i g_i^T`` (per block or whole model),
or an approximation of its inverse; TracIn takes ``H = I``.

Damping
-------
Default per block ``lambda_b = 0.1 * mean_i ||g_i,b||^2 / d_b`` from the train
gradients (``d_b`` = number of parameters in the block; the DataInf/HyperINF
rule); whole-model methods (``exact_joint``, ``rrinf``) apply the same rule to
the concatenated gradient. ``damping=`` takes a float or a block -> float
mapping. ``lambda <= 0`` and non-finite gradients raise ``ValueError``.
"""

from ._registry import (
    DampedParams,
    InfluenceResult,
    MethodParams,
    MethodSpec,
    NumericalError,
    available,
    compute_influence,
    get,
    make_params,
    method_entry,
    register,
)

# each module registers itself
from . import tracin, cosine, datainf, exact_block, exact_joint, lissa, hyperinf, hyperinf_fim, rrinf, ekfac  # noqa: E402,F401
from . import tracin_we  # noqa: E402,F401  (word-embedding variants of the layer-choice paper)

__all__ = [
    "compute_influence",
    "available",
    "get",
    "register",
    "make_params",
    "method_entry",
    "InfluenceResult",
    "MethodSpec",
    "MethodParams",
    "DampedParams",
    "NumericalError",
]
