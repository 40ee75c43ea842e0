"""Snakemake adapter: Table 10-layout timing table and Table 9-layout error table (markdown + tidy CSV)."""
from pathlib import Path

import pandas as pd

from inflbench.synthetic import analysis

sm = snakemake  # noqa: F821 (injected by Snakemake)
cfg = sm.params.cfg
long = analysis.table_long(pd.read_csv(sm.input.convergence), cfg)
Path(sm.output.timing_md).write_text(analysis.timing_table(long, cfg))
long[long["metric"] == "seconds"].to_csv(sm.output.timing_csv, index=False)
Path(sm.output.error_md).write_text(analysis.error_table(long, cfg))
long[long["metric"] != "seconds"].to_csv(sm.output.error_csv, index=False)
with open(sm.log[0], "w") as log:
    print(f"{len(long)} table entries", file=log)
