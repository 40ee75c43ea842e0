"""EK-FAC influence (George et al. 2018; Grosse et al. 2023) through kronfluence.

EK-FAC needs the model and data (it fits Kronecker factors from activations and
pre-activation gradients), not stored per-sample gradients, so it is registered
with ``needs_model=True`` and the workflow routes it to its own rule, which
calls :func:`ekfac_influence` and writes the same output contract
(``{"total": (n_train, n_test)}``, positive = harmful).

Estimand: layer-wise (block-diagonal over tracked ``nn.Linear`` / ``nn.Conv2d``
modules) damped empirical Fisher influence, with each module's Fisher
approximated by EK-FAC (Kronecker-factored eigenbasis, eigenvalues corrected
from the per-sample gradients). kronfluence is imported lazily; install it with
``pip install --no-deps kronfluence einconv einops opt-einsum`` (its
``accelerate``, ``safetensors``, ``tqdm`` deps come with the project) to avoid
pulling a CUDA torch.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ._registry import MethodParams, check_damping, register

__all__ = ["ekfac_influence", "EkfacParams", "kronfluence_available"]

_INSTALL_HINT = (
    "EK-FAC needs the optional dependency 'kronfluence'. Install it without pulling a CUDA torch: "
    "pip install --no-deps kronfluence einconv einops opt-einsum"
)


#: What ``import kronfluence`` imports beyond torch, transformers, safetensors and tqdm (our own requirements).
_KRONFLUENCE_MODULES = ("kronfluence", "accelerate", "einops", "einconv", "opt_einsum")


def kronfluence_available() -> bool:
    """Whether kronfluence and the packages it imports are installed. Looked up, not imported, as every
    workflow plan asks (0.25 s of a 10.8 s `snakemake -n` of the test profile); a broken install still
    fails in the ekfac job with the install hint."""
    return all(importlib.util.find_spec(m) is not None for m in _KRONFLUENCE_MODULES)


def _kronfluence_device(on_cpu: bool) -> None:
    """kronfluence keeps its device in a process-wide state set by the first Analyzer: reset it when this
    model lives elsewhere (else a CPU model after a CUDA one runs on the GPU)."""
    from kronfluence.utils.state import State

    if State._shared_state and State._shared_state.get("cpu") != on_cpu:
        State._reset_state()


def _import_kronfluence():
    try:
        from kronfluence.analyzer import Analyzer, prepare_model
        from kronfluence.arguments import FactorArguments, ScoreArguments
        from kronfluence.task import Task
        from kronfluence.utils.dataset import DataLoaderKwargs
    except ImportError as e:  # pragma: no cover - exercised only without kronfluence
        raise ImportError(f"{_INSTALL_HINT} ({e})") from e
    return Analyzer, prepare_model, FactorArguments, ScoreArguments, Task, DataLoaderKwargs


class _SampleDataset(torch.utils.data.Dataset):
    """Individual samples of a list of dict batches (tensors / sequences indexed on dim 0)."""

    def __init__(self, batches: Sequence[dict]):
        self.items: list[dict] = []
        for b in batches:
            sizes = {len(v) for v in b.values() if isinstance(v, (Tensor, list, tuple))}
            if len(sizes) != 1:
                raise ValueError(f"a batch must hold per-sample entries of one common length, got lengths {sorted(sizes)}")
            (size,) = sizes
            for j in range(size):
                self.items.append({k: (v[j] if isinstance(v, (Tensor, list, tuple)) else v) for k, v in b.items()})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


@dataclass(frozen=True)
class EkfacParams(MethodParams):
    damping: float | None = field(
        default=None,
        metadata={"help": "Damping added to the EK-FAC eigenvalues. None: kronfluence's heuristic, 0.1 x mean eigenvalue per module."},
    )
    module_names: tuple[str, ...] | None = field(
        default=None,
        metadata={"help": "Names of the nn.Linear / nn.Conv2d modules to track (e.g. the LoRA A/B modules). None: all supported modules."},
    )

    def __post_init__(self):
        check_damping(self.damping, allow_mapping=False)


@register(
    "ekfac",
    params=EkfacParams,
    needs_model=True,
    summary="EK-FAC (kronfluence) on the model: block-diagonal per module, Kronecker-factored eigenbasis",
    requires=lambda: None if kronfluence_available() else _INSTALL_HINT,
)
def _ekfac_on_model(model, train_batches, test_batches, per_sample_loss, module_names, p: EkfacParams):
    """Model-level entry of the registry (``needs_model``): per-module scores of the given modules."""
    return ekfac_influence(model, train_batches, test_batches, per_sample_loss, module_names=module_names,
                           damping=p.damping, per_module=True)


def ekfac_influence(
    model: nn.Module,
    train_batches: list[dict],
    test_batches: list[dict],
    per_sample_loss: Callable[[nn.Module, dict], Tensor],
    module_names: list[str] | None = None,
    damping: float | None = None,
    *,
    batch_size: int | None = None,
    copy_model: bool = True,
    output_dir: str | None = None,
    per_module: bool = False,
) -> dict[str, Tensor]:
    """EK-FAC influence scores ``{"total": (n_train, n_test)}`` (float64, positive = harmful).

    ``per_module=True`` returns one ``(n_train, n_test)`` entry per tracked module
    instead (keyed by module name; EK-FAC is block-diagonal, so they sum to the total).
    Runs on the device of the model's parameters.

    ``per_sample_loss(model, batch)`` returns the ``(B,)`` per-sample losses of a
    batch; their sum is kronfluence's training loss and the test loss is the
    measurement. Factors use the empirical Fisher (the gradients of the
    observed labels), matching the Fisher of the other methods. ``module_names``
    restricts the tracked modules; ``damping`` None uses kronfluence's heuristic.
    The model is deep-copied unless ``copy_model=False`` (kronfluence wraps
    modules in place). Factors and scores go to a temporary directory unless
    ``output_dir`` is given.
    """
    Analyzer, prepare_model, FactorArguments, ScoreArguments, Task, DataLoaderKwargs = _import_kronfluence()
    EkfacParams(damping=damping, module_names=tuple(module_names) if module_names else None)  # validates
    if not train_batches or not test_batches:
        raise ValueError("ekfac_influence needs at least one train and one test batch")

    tracked = list(module_names) if module_names else None

    class _LossTask(Task):
        def compute_train_loss(self, batch: Any, model: nn.Module, sample: bool = False) -> Tensor:
            if sample:
                raise RuntimeError("ekfac_influence uses the empirical Fisher; sampled labels are not supported")
            return per_sample_loss(model, batch).sum()

        def compute_measurement(self, batch: Any, model: nn.Module) -> Tensor:
            return per_sample_loss(model, batch).sum()

        def get_influence_tracked_modules(self):
            return tracked

    train_ds = _SampleDataset(train_batches)
    test_ds = _SampleDataset(test_batches)
    bs = batch_size or max(
        max((len(v) for v in b.values() if isinstance(v, (Tensor, list, tuple))), default=1)
        for b in list(train_batches) + list(test_batches)
    )
    task = _LossTask()
    work = copy.deepcopy(model) if copy_model else model
    on_cpu = next(work.parameters()).device.type == "cpu"
    _kronfluence_device(on_cpu)
    work = prepare_model(work, task)
    logging.getLogger("kronfluence").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="inflbench-ekfac-") as tmp:
        analyzer = Analyzer(
            analysis_name="inflbench",
            model=work,
            task=task,
            cpu=on_cpu,
            disable_tqdm=True,
            output_dir=output_dir or tmp,
            log_level=logging.WARNING,
        )
        analyzer.set_dataloader_kwargs(DataLoaderKwargs(num_workers=0))
        factor_args = FactorArguments(strategy="ekfac", use_empirical_fisher=True)
        analyzer.fit_all_factors(
            factors_name="ekfac",
            dataset=train_ds,
            per_device_batch_size=bs,
            factor_args=factor_args,
            overwrite_output_dir=True,
        )
        score_args = ScoreArguments(damping_factor=damping, compute_per_module_scores=True)
        analyzer.compute_pairwise_scores(
            scores_name="ekfac_scores",
            factors_name="ekfac",
            query_dataset=test_ds,
            train_dataset=train_ds,
            per_device_query_batch_size=bs,
            per_device_train_batch_size=bs,
            score_args=score_args,
            overwrite_output_dir=True,
        )
        scores = analyzer.load_pairwise_scores(scores_name="ekfac_scores")
        if not scores:
            raise RuntimeError("kronfluence did not produce pairwise scores")
        lambdas = (analyzer.load_lambda_matrices(factors_name="ekfac") or {}).get("lambda_matrix", {})
        # kronfluence: (n_test, n_train), positive = helpful
        out = {k: (-v.to(torch.float64)).T.contiguous().cpu() for k, v in scores.items()}
    for name, lam in lambdas.items():
        # every training gradient of this module is zero (e.g. LoRA A while B is still 0): its influence
        # is exactly 0, but the heuristic damping (0.1 x mean eigenvalue) is then 0 and kronfluence gives 0/0
        if name in out and not bool(lam.abs().sum() > 0):
            out[name] = torch.zeros_like(out[name])
    bad = sorted(k for k, v in out.items() if not bool(torch.isfinite(v).all()))
    if bad:
        raise ValueError(f"ekfac produced non-finite scores for modules {bad[:3]} (check the losses and the damping)")
    if not per_module:
        out = {"total": torch.stack(list(out.values())).sum(0)}
    return out
