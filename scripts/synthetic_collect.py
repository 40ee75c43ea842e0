"""Snakemake adapter: concatenate the per-cell results into the tidy convergence table and the cell table."""
from inflbench.synthetic.analysis import collect

sm = snakemake  # noqa: F821 (injected by Snakemake)
conv, cells = collect(list(sm.input.cells), list(sm.input.metas))
conv.to_csv(sm.output.convergence, index=False)
cells.to_csv(sm.output.cells, index=False)
with open(sm.log[0], "w") as log:
    print(f"{len(cells)} cells, {len(conv)} rows", file=log)
