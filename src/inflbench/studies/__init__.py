"""The four studies of the benchmark, one package each, and their registry.

=================  ===============================  ==========================================================
study              switch                           what it runs
=================  ===============================  ==========================================================
detection          ``detection.enabled``            mislabeled-data detection on the core DAG (scores vs val)
identification     ``identification.enabled``       same-class retrieval on the core DAG (scores vs test)
layer_choice       ``layers.enabled``               layer groups, aggregation, filter-and-retrain (detection)
synthetic          ``synthetic.enabled``            inverse-HVP solvers on synthetic matrices (no model)
=================  ===============================  ==========================================================

Each study has ``rules/<study>.smk`` and a package here (stages, metrics, report). ``enabled(cfg)`` of a
resolved config tells whether a study runs; the Snakefile asks every registered study for its targets.
Adding a study: a package here, one ``Study`` entry in ``STUDIES``, one rule file included by the Snakefile.
"""

from __future__ import annotations

from dataclasses import dataclass

from inflbench.errors import ConfigError
from inflbench.schemas import section_check
from inflbench.studies.identification.grid import check_grid  # noqa: F401  (registers the grid check)
from inflbench.studies.layer_choice import check_layers  # noqa: F401  (registers the layers check)
from inflbench.studies.synthetic.config import check_synthetic  # noqa: F401  (registers the synthetic check)


@dataclass(frozen=True)
class Study:
    name: str
    #: config section that holds the study's ``enabled`` switch
    section: str
    #: what the study evaluates, one line
    description: str
    #: whether it needs the core DAG (data, fine-tuning, gradients, scores)
    uses_model: bool = True

    def enabled(self, cfg: dict) -> bool:
        """Whether the study runs under a resolved config."""
        return bool((cfg.get(self.section) or {}).get("enabled"))


STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("detection", "detection", "mislabeled-data detection (RRInf, DataInf)"),
    Study("identification", "identification", "influential-data identification (RRInf §4.2, DataInf §4.2)"),
    Study("layer_choice", "layers", "layer-choice study and retraining evaluations"),
    Study("synthetic", "synthetic", "synthetic inverse-HVP convergence (HyperINF §4)", uses_model=False),
)}

EXPERIMENTS = {"mislabeled_detection": "detection", "influential_data": "identification"}


@section_check("studies")
def resolve_switches(cfg: dict) -> None:
    """Resolve ``detection.enabled`` / ``identification.enabled``: null = from the older ``experiment`` key;
    without it identification is off and detection on unless identification is enabled. The two score
    against different splits (val vs test), so one run enables at most one of them. Afterwards
    ``experiment`` names the enabled one (``mislabeled_detection`` when neither is)."""
    det, ide, exp = cfg["detection"]["enabled"], cfg["identification"]["enabled"], cfg["experiment"]
    if exp is not None:
        named = EXPERIMENTS[exp]
        if (named == "detection" and det is False) or (named == "identification" and ide is False):
            raise ConfigError(f"{named}.enabled", f"false, but experiment: {exp} asks for this study")
        det = (named == "detection") if det is None else det
        ide = (named == "identification") if ide is None else ide
    ide = bool(ide)
    det = (not ide) if det is None else det
    if det and ide:
        raise ConfigError("identification.enabled", "detection and identification score against different "
                          "splits (validation vs test); enable one of them per run")
    cfg["detection"]["enabled"], cfg["identification"]["enabled"] = bool(det), bool(ide)
    cfg["experiment"] = "influential_data" if ide else "mislabeled_detection"


def enabled_studies(cfg: dict) -> list[str]:
    return [name for name, study in STUDIES.items() if study.enabled(cfg)]
