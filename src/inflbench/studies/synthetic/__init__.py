"""Synthetic inverse-HVP convergence and matrix-inversion study (HyperINF section 4, appendices H-I,
extended with RRInf's normalised SGD). Modules: ``config`` (the ``synthetic:`` section, checked at parse time),
``matrices`` (the problems), ``runner`` (every solver on one cell), ``stages`` (the rule functions and the
targets on the run's Layout), ``analysis`` (tidy tables, Table 9/10 layouts), ``summary`` (generated
agreement summary), ``plots`` (figures), ``resources`` (job resource estimates)."""

from inflbench.studies.synthetic.config import validate_config

__all__ = ["validate_config"]
