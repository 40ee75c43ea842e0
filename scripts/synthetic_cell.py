"""Snakemake adapter: run every configured solver on one (distribution, d, N, seed) cell."""
import json
from pathlib import Path

import torch

from inflbench.synthetic.runner import run_cell

sm = snakemake  # noqa: F821 (injected by Snakemake)
torch.set_num_threads(sm.threads)
with open(sm.log[0], "w") as log:
    table, meta = run_cell(sm.params.settings, sm.wildcards.distribution, int(sm.wildcards.d), int(sm.wildcards.n),
                           int(sm.wildcards.seed), log=lambda msg: print(msg, file=log, flush=True))
table.to_csv(sm.output.csv, index=False)
Path(sm.output.meta).write_text(json.dumps(meta, indent=1))
