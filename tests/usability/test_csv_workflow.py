"""The test profile on a user's CSV file: splits, flagged examples with their text, the PEFT adapter, the
summary command (one end-to-end run, detection only)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from common import MINILM, ROOT, snakemake
from inflbench.data.generated import generate_sentiment
from inflbench.paths import Layout


@pytest.mark.slow
def test_test_profile_runs_on_a_csv_source(tmp_path):
    records = generate_sentiment(120, seed=5, ambiguity=0.15)
    names = ["negative", "positive"]
    pd.DataFrame({"review": [r["text_a"] for r in records], "sentiment": [names[r["label"]] for r in records]}) \
        .to_csv(tmp_path / "reviews.csv", index=False)
    profile = yaml.safe_load((ROOT / "configs" / "test.yaml").read_text())  # the test profile, on a CSV file
    profile["methods"].pop("ekfac", None)  # the slowest method; its own tests cover it
    profile.update({
        "run": "csv", "results_dir": str(tmp_path / "results"), "evaluate": {"top_k": 5},
        "synthetic": {"enabled": False}})
    profile["data"].update({"source": "file", "tasks": ["reviews"],
                            "options": {"files": {"reviews": str(tmp_path / "reviews.csv")},
                                        "text_column": "review", "label_column": "sentiment"}})
    config = tmp_path / "csv.yaml"
    config.write_text(yaml.safe_dump(profile))
    proc = snakemake("--cores", "2", "--configfile", str(config), workdir=tmp_path, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    layout = Layout(tmp_path / "results", "csv")
    train = pd.read_csv(layout.split(task="reviews", split="train"))
    assert len(train) == 48 and train["flipped"].sum() == 10 and set(train["class_name"]) == set(names)
    top = pd.read_csv(layout.topk(task="reviews", method="tracin"))
    assert len(top) == 10 and set(top["text"]) <= set(train["text_a"]) and "class_name" in top
    flagged = train.set_index("id").loc[top["id"]]
    assert (flagged["flipped"].to_numpy() == top["flipped"].to_numpy()).all()
    # the adapter in PEFT's format loads with peft
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from inflbench.models import resolve_pretrained

    folder = layout.peft_adapter(task="reviews")
    assert json.loads(open(f"{folder}/inflbench.json").read())["peft"] is True
    base = AutoModelForSequenceClassification.from_pretrained(resolve_pretrained(MINILM["name_or_path"]), num_labels=2)
    model = PeftModel.from_pretrained(base, folder)
    assert any("lora_A" in n for n, _ in model.named_parameters())
    summary = subprocess.run([sys.executable, "-m", "inflbench", "summary", str(layout.root)], capture_output=True,
                             text=True, timeout=120)
    assert summary.returncode == 0 and summary.stdout.startswith("Leaderboard")
    assert {line.split()[0] for line in summary.stdout.splitlines()[2:6]} == {"tracin", "cosine", "datainf",
                                                                              "exact_block"}
