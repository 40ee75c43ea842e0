"""Snakemake adapter: Fig. 1 layout, one Figs. 12-16-layout figure per distribution, and the timing figure."""
import pandas as pd

from inflbench.synthetic import analysis, plots

sm = snakemake  # noqa: F821 (injected by Snakemake)
cfg = sm.params.cfg
conv = pd.read_csv(sm.input.convergence)
plots.figure1(conv, cfg, sm.output.fig1)
for dist, out in zip(cfg["distributions"], sm.output.distributions):
    plots.distribution_figure(conv, cfg, dist, out)
plots.timing_figure(analysis.table_long(conv, cfg), cfg, sm.output.timing)
with open(sm.log[0], "w") as log:
    print(f"wrote {2 + len(cfg['distributions'])} figures", file=log)
