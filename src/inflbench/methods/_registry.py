"""Method registry, parameter handling and the single entry point ``compute_influence``."""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

__all__ = [
    "InfluenceResult",
    "MethodSpec",
    "MethodParams",
    "DampedParams",
    "register",
    "get",
    "available",
    "make_params",
    "method_entry",
    "compute_influence",
    "NumericalError",
]


class NumericalError(ValueError):
    """Finite inputs produced non-finite scores (overflow or an unstable solve)."""


class InfluenceResult(dict):
    """``dict[str, Tensor]`` of ``(n_train, n_test)`` scores plus a metadata side channel.

    ``meta`` maps keys to ``str | float | bool`` (e.g. ``{"diverged": True,
    "diverged_blocks": "a,b"}``); plain ``dict`` use keeps working.
    """

    def __init__(self, *args, meta: Mapping[str, str | float | bool] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.meta: dict[str, str | float | bool] = dict(meta or {})

    def total(self) -> Tensor:
        """Sum of all blocks (or the single ``"total"`` entry)."""
        if "total" in self:
            return self["total"]
        vals = list(self.values())
        out = vals[0].clone()
        for v in vals[1:]:
            out += v
        return out


# --------------------------------------------------------------------------- params


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class MethodParams:
    """Base of all parameter dataclasses (no parameters)."""

    def as_meta(self) -> dict[str, str | float | bool]:
        out: dict[str, str | float | bool] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                out[f"param.{f.name}"] = "default"
            elif isinstance(v, Mapping):
                out[f"param.{f.name}"] = "per-block"
            elif isinstance(v, (bool, str)):
                out[f"param.{f.name}"] = v
            elif isinstance(v, (int, float)):
                out[f"param.{f.name}"] = float(v)
            else:
                out[f"param.{f.name}"] = str(v)
        return out


def check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"parameter '{name}' must be one of {', '.join(map(repr, choices))}; got {value!r}")


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"parameter '{name}' must be an integer >= {minimum}; got {value!r}")


def check_pos_float(name: str, value: Any, *, allow_none: bool = False, upper: float | None = None) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if ok and upper is not None:
        ok = value < upper
    if not ok:
        rng = f"in (0, {upper})" if upper is not None else "> 0"
        raise ValueError(f"parameter '{name}' must be a finite number {rng}; got {value!r}")


def check_damping(value: Any, *, allow_mapping: bool = True) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        if not allow_mapping:
            raise ValueError("parameter 'damping' must be a single positive float for this method (it couples blocks)")
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"parameter 'damping' for block '{k}' must be a finite number > 0; got {v!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(
            "parameter 'damping' must be None (default rule 0.1*mean||g||^2/d per block), "
            f"a finite number > 0, or a mapping block -> number > 0; got {value!r}"
        )


DTYPES = ("auto", "float32", "float64")


@dataclass(frozen=True)
class DampedParams(MethodParams):
    damping: float | Mapping[str, float] | None = field(
        default=None,
        metadata=_help(
            "Damping lambda. None: per block lambda_b = 0.1 * mean_i ||g_i,b||^2 / d_b from the train "
            "gradients; a float: the same lambda for every block; a mapping block -> float."
        ),
    )

    def __post_init__(self):
        check_damping(self.damping)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: Callable[..., Mapping[str, Tensor]]
    params_cls: type
    couples_blocks: bool = False
    needs_model: bool = False
    summary: str = ""
    #: returns a one-line install hint when an optional dependency is missing, else None
    requires: Callable[[], str | None] | None = None
    #: consumes shared block statistics (Grams, norms) when given
    block_stats: bool = False
    #: every train element reaches every score column (a product over the whole store), so non-finite
    #: train gradients always give non-finite scores: their check runs only then (no extra pass)
    checks_by_scores: bool = False

    def missing_dependency(self) -> str | None:
        return self.requires() if self.requires is not None else None

    def param_names(self) -> list[str]:
        return [f.name for f in fields(self.params_cls)]

    def param_help(self) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(self.params_cls)}

    def defaults(self) -> dict[str, Any]:
        return {f.name: getattr(self.params_cls(), f.name) for f in fields(self.params_cls)}


_REGISTRY: dict[str, MethodSpec] = {}


def register(
    name: str,
    *,
    params: type = MethodParams,
    couples_blocks: bool = False,
    needs_model: bool = False,
    summary: str = "",
    requires: Callable[[], str | None] | None = None,
    block_stats: bool = False,
    checks_by_scores: bool = False,
):
    """Decorator: ``@register("tracin", params=TracInParams)`` on ``fn(data, params)``.

    ``fn`` receives a validated :class:`inflbench.methods._common.GradData`
    (equal-keyed ``train`` / ``test`` dicts of ``(n, *shape)`` tensors plus
    float64 per-sample squared norms) and a ``params`` instance; it returns a mapping block ->
    ``(n_train, n_test)`` scores (or ``{"total": ...}`` if ``couples_blocks``),
    optionally an :class:`InfluenceResult` carrying ``meta``.

    With ``needs_model=True`` the signature is instead ``fn(model, train_batches, test_batches,
    per_sample_loss, module_names, params)`` returning full module name -> ``(n_train, n_test)``
    (positive = harmful); the workflow's ``model_scores`` stage calls it.
    """
    if not (dataclasses.is_dataclass(params) and issubclass(params, MethodParams)):
        raise TypeError("params must be a MethodParams dataclass")

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"method '{name}' is already registered")
        _REGISTRY[name] = MethodSpec(name, fn, params, couples_blocks, needs_model,
                                     summary or (fn.__doc__ or "").strip().split("\n")[0], requires,
                                     block_stats, checks_by_scores)
        return fn

    return deco


def available(*, include_model_methods: bool = True) -> list[str]:
    """Registered method names (sorted). ``include_model_methods=False`` drops ``needs_model`` ones."""
    return sorted(n for n, s in _REGISTRY.items() if include_model_methods or not s.needs_model)


def get(name: str) -> MethodSpec:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown influence method {name!r}; valid choices: {', '.join(available())}") from None


def method_entry(name: str, entry: dict | None, seed: int | None = None) -> tuple[str, dict]:
    """A ``methods:`` entry -> (registered method, its parameters). The entry's ``method`` key names the method
    (default: the entry name); ``seed``, when given, fills the method's own ``seed`` parameter unless set."""
    params = dict(entry or {})
    base = params.pop("method", name)
    if seed is not None and "seed" not in params and "seed" in get(base).param_names():
        params["seed"] = int(seed)
    return base, params


def make_params(method: str, **params) -> MethodParams:
    """Validate ``params`` for ``method`` and return its frozen parameter dataclass."""
    spec = get(method)
    accepted = spec.param_names()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        acc = ", ".join(accepted) if accepted else "(none)"
        raise ValueError(f"method '{method}': unknown parameter(s) {', '.join(unknown)}; accepted: {acc}")
    return spec.params_cls(**params)


# --------------------------------------------------------------------------- inputs


def _validate_inputs(train: Mapping[str, Tensor], test: Mapping[str, Tensor]) -> tuple[dict, dict]:
    if not isinstance(train, Mapping) or not isinstance(test, Mapping):
        raise ValueError("train and test must be mappings block name -> per-sample gradient tensor")
    if not train:
        raise ValueError("train has no blocks")
    if set(train) != set(test):
        only_tr = sorted(set(train) - set(test))
        only_te = sorted(set(test) - set(train))
        raise ValueError(f"train and test blocks differ: only in train {only_tr}, only in test {only_te}")
    if "total" in train:
        raise ValueError("'total' is reserved and cannot be a block name")
    lazy = hasattr(train, "shape_of") and hasattr(test, "shape_of")
    if lazy:  # read-on-access stores: checked from their headers, passed through unread
        from ._common import dtype_of, shape_of

        shapes = {k: (torch.empty(shape_of(train, k), dtype=dtype_of(train, k), device="meta"),
                      torch.empty(shape_of(test, k), dtype=dtype_of(test, k), device="meta")) for k in train}
    tr, te = {}, {}
    n = m = None
    for k in train:
        a, b = shapes[k] if lazy else (train[k], test[k])
        if not isinstance(a, Tensor) or not isinstance(b, Tensor):
            raise ValueError(f"block '{k}': gradients must be torch tensors")
        if not a.is_floating_point() or not b.is_floating_point():
            raise ValueError(f"block '{k}': gradients must be floating point, got {a.dtype} / {b.dtype}")
        if a.dim() < 2 or b.dim() < 2:
            raise ValueError(f"block '{k}': expected shape (n, *param_shape), got {tuple(a.shape)} / {tuple(b.shape)}")
        if a.shape[1:] != b.shape[1:]:
            raise ValueError(f"block '{k}': train param shape {tuple(a.shape[1:])} != test {tuple(b.shape[1:])}")
        if a.shape[1:].numel() == 0:
            raise ValueError(f"block '{k}': empty parameter shape {tuple(a.shape[1:])}")
        n = a.shape[0] if n is None else n
        m = b.shape[0] if m is None else m
        if a.shape[0] != n or b.shape[0] != m:
            raise ValueError(f"block '{k}': inconsistent sample counts (train {a.shape[0]} vs {n}, test {b.shape[0]} vs {m})")
        tr[k], te[k] = a.detach(), b.detach()
    if n == 0 or m == 0:
        raise ValueError(f"need at least one train and one test sample, got n_train={n}, n_test={m}")
    return (train, test) if lazy else (tr, te)


def _all_finite(v: Tensor) -> bool:
    """Whether every entry is finite: a finite sum says so in one pass without a mask (else the full check)."""
    return bool(torch.isfinite(v.sum())) or bool(torch.isfinite(v).all())


def check_finite_inputs(data, sides: tuple[str, ...] = ("train", "test")) -> None:
    """Raise naming the first block whose gradients hold nan/inf (uses the float64 norms)."""
    for which, grads, sq in (("train", data.train, data.train_sq), ("test", data.test, data.test_sq)):
        if which not in sides:
            continue
        norms = [sq[k] for k in grads]
        if bool(torch.isfinite(torch.stack(norms)).all()):  # one check for all blocks (same sample count)
            continue
        for k, v in zip(grads, norms):
            if not bool(torch.isfinite(v).all()):
                if bool(torch.isfinite(grads[k]).all()):
                    raise ValueError(f"{which} gradients of block '{k}' are too large (their squared norm overflows)")
                raise ValueError(f"non-finite values (nan/inf) in the {which} gradients of block '{k}'")


def _check_norms(which: str, norms: Mapping[str, Tensor] | None, grads: Mapping[str, Tensor]) -> dict:
    from ._common import shape_of

    norms = dict(norms or {})
    rows = shape_of(grads, next(iter(grads)))[0]
    for k, v in norms.items():
        if k not in grads:
            raise ValueError(f"{which}_sq: norms of '{k}', which is not a {which} block")
        if tuple(v.shape) != (rows,):
            raise ValueError(f"{which}_sq['{k}']: shape {tuple(v.shape)}, expected ({rows},) (one squared norm per sample)")
    return {k: v.to(torch.float64) for k, v in norms.items()}


def compute_influence(
    method: str, train: Mapping[str, Tensor], test: Mapping[str, Tensor], *, block_stats=None,
    train_sq: Mapping[str, Tensor] | None = None, test_sq: Mapping[str, Tensor] | None = None, **params
) -> InfluenceResult:
    """Influence scores of every training sample on every test sample.

    See the package docstring of :mod:`inflbench.methods` for the contract and
    sign convention. Returns an :class:`InfluenceResult` mapping block ->
    ``(n_train, n_test)`` float64 scores (``{"total": ...}`` for methods that
    couple blocks), with ``.meta`` describing the run. ``block_stats``: shared
    statistics of ``train`` (:mod:`inflbench.methods._stats`), used by the methods
    that consume them (``get(name).block_stats``) instead of recomputing Grams. ``train_sq`` / ``test_sq``:
    known per-sample squared norms (block -> ``(n,)``, e.g. a gradient store's, :meth:`TensorStore.sq_norms`),
    used instead of a pass over the gradients wherever a method needs norms (damping rule, cosine, checks).
    """
    from ._common import GradData

    spec = get(method)
    if spec.needs_model:
        raise ValueError(
            f"method '{method}' needs the model and data, not stored gradients; "
            f"call its model-level entry point (inflbench.methods.{method}) instead"
        )
    p = make_params(method, **params)
    tr, te = _validate_inputs(train, test)
    if block_stats is not None:
        block_stats.check(tr)
    data = GradData(tr, te, _check_norms("train", train_sq, tr), _check_norms("test", test_sq, te),
                    stats=block_stats if spec.block_stats else None)
    check_finite_inputs(data, ("test",) if spec.checks_by_scores else ("train", "test"))
    out = spec.fn(data, p)
    meta = dict(getattr(out, "meta", {}) or {})
    n, m = data.n, data.m
    res = InfluenceResult(meta={"method": method, **p.as_meta(), **meta})
    if res.meta.get("diverged"):
        res.meta["converged"] = False
        res.meta["convergence"] = res.meta.get("convergence") or f"diverged in {res.meta.get('diverged_blocks') or 'some blocks'}"
    for k, v in out.items():
        if tuple(v.shape) != (n, m):
            raise RuntimeError(f"method '{method}' returned shape {tuple(v.shape)} for '{k}', expected {(n, m)}")
        res[k] = v.to(torch.float64)
    if spec.couples_blocks and set(res) != {"total"}:
        raise RuntimeError(f"method '{method}' couples blocks and must return only 'total'")
    # one finite sum of the block sums clears every block (a nan / inf entry would carry through)
    bad = [] if _all_finite(torch.stack([v.sum() for v in res.values()])) else \
        [k for k, v in res.items() if not _all_finite(v)]
    if bad and spec.checks_by_scores:  # non-finite train gradients are found from the scores they spoil
        check_finite_inputs(data, ("train",))
    if bad:
        if res.meta.get("diverged"):
            warnings.warn(
                f"{method}: non-finite scores in {', '.join(bad)} (the recursion diverged; see result.meta)",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            raise NumericalError(f"method '{method}' produced non-finite scores in block(s) {', '.join(bad)} from finite inputs")
    if res.meta.get("diverged"):
        warnings.warn(
            f"{method}: diverged in block(s) {res.meta.get('diverged_blocks', '?')}; scores are not reliable",
            RuntimeWarning,
            stacklevel=2,
        )
    return res
