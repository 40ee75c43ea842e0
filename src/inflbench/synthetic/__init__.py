"""Synthetic inverse-HVP convergence and matrix-inversion study (HyperINF section 4, appendices H-I,
extended with RRInf's normalised SGD). Entry points: ``validate_config`` (parse time), ``runner.run_cell``
(one Snakemake job per cell), ``analysis`` (tables, summary), ``plots`` (figures), ``paths``."""

from inflbench.synthetic.config import validate_config

__all__ = ["validate_config"]
