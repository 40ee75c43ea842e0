"""Snakemake adapter: the generated markdown summary (agreement with the papers, from the numbers)."""
from pathlib import Path

import pandas as pd

from inflbench.synthetic import analysis

sm = snakemake  # noqa: F821 (injected by Snakemake)
tables = Path(sm.input.timing).read_text() + "\n" + Path(sm.input.error).read_text()
text = analysis.summary_markdown(pd.read_csv(sm.input.convergence), pd.read_csv(sm.input.cells), sm.params.cfg, tables)
Path(sm.output.summary).write_text(text)
with open(sm.log[0], "w") as log:
    print(text.split("## Run status")[0], file=log)
