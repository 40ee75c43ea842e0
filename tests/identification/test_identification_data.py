"""Identification data sources: SVAMP classes, generated LM tasks, digits and image folders; bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from idtools import ROOT, data_cfg, needs_diffusers, profile, svamp_path
from inflbench.config import validate_config
from inflbench.data import SOURCES, prepare_splits
from inflbench.data.svamp import normalise_type, read_svamp
from inflbench.errors import ConfigError, DataError


# --------------------------------------------------------------------------- SVAMP

def test_svamp_type_spellings():
    assert normalise_type("Common-Division") == normalise_type("Common-Divison") == "Division"
    assert normalise_type("addition") == "Addition" and normalise_type("Modulo") is None


def test_svamp_classes_and_paper_counts():
    path = svamp_path()
    problems = read_svamp(path)
    kinds = {p["Type"] for p in problems}
    assert kinds == {"Addition", "Subtraction", "Multiplication", "Division"}
    raw = json.loads(path.read_text())
    assert sum(p["Type"] == "Division" for p in problems) == sum("Divis" in r["Type"] for r in raw)
    cfg = data_cfg("svamp", "svamp", (300, 20, 100), path=str(path))
    SOURCES["svamp"].check(cfg)
    splits = prepare_splits(cfg, "svamp", seed=0)
    for split, per_class in (("train", 75), ("val", 5), ("test", 25)):
        counts = splits[split]["class_name"].value_counts()
        assert len(counts) == 4 and (counts == per_class).all(), (split, counts.to_dict())
    assert not set(splits["train"]["uid"]) & set(splits["test"]["uid"])  # disjoint draws
    row = splits["train"].iloc[0]
    assert row["prompt"].endswith("answer:") and " = " in row["answer"]
    assert splits["train"]["label"].max() == 3 and not splits["train"]["flipped"].any()


def test_svamp_bad_input_fails_in_check():
    path = str(svamp_path())
    with pytest.raises(ConfigError, match="data.options.classes.*unknown class 'Modulo'"):
        SOURCES["svamp"].check(data_cfg("svamp", "svamp", path=path, classes=["Addition", "Modulo"]))
    # Multiplication has 108 problems: 120 per class cannot be drawn
    with pytest.raises(DataError, match="class 'Multiplication' has 108 samples but 120"):
        SOURCES["svamp"].check(data_cfg("svamp", "svamp", (360, 20, 100), path=path))
    with pytest.raises(ConfigError, match=r"data.options.prompt_template.*lacks the placeholder \{question\}"):
        SOURCES["svamp"].check(data_cfg("svamp", "svamp", path=path, prompt_template="{body} Answer:"))
    with pytest.raises(ConfigError, match="data.options.answer_template"):
        SOURCES["svamp"].check(data_cfg("svamp", "svamp", path=path, answer_template="the result"))


def test_svamp_class_subset_with_odd_spelling(tmp_path):
    problems = [{"ID": f"p{i}", "Body": f"Tom has {i} apples.", "Question": "How many?", "Equation": f"( {i}.0 + 1.0 )",
                 "Answer": i + 1.0, "Type": t} for i, t in enumerate(["Addition", "Common-Divison"] * 4)]
    (tmp_path / "s.json").write_text(json.dumps(problems))
    cfg = data_cfg("svamp", "svamp", (4, 2, 2), path=str(tmp_path / "s.json"), classes=["addition", "common-divison"])
    SOURCES["svamp"].check(cfg)
    splits = prepare_splits(cfg, "svamp", seed=1)
    assert set(splits["train"]["class_name"]) == {"Addition", "Division"}
    assert splits["test"]["answer"].str.match(r"^\( \d+\.0 \+ 1\.0 \) = \d+$").all()


# --------------------------------------------------------------------------- generated LM tasks

@pytest.mark.parametrize("task,n_classes", [("sentence_transform", 5), ("math", 4), ("math_reasoning", 4)])
def test_lm_generated_balanced_and_deterministic(task, n_classes):
    cfg = data_cfg("lm_generated", task, (4 * n_classes, n_classes, 2 * n_classes))
    SOURCES["lm_generated"].check(cfg)
    a, b = prepare_splits(cfg, task, seed=5), prepare_splits(cfg, task, seed=5)
    assert a["train"].equals(b["train"])
    assert (a["train"]["class_name"].value_counts() == 4).all() and a["train"]["class_name"].nunique() == n_classes
    assert (a["test"]["class_name"].value_counts() == 2).all()
    assert a["train"]["prompt"].str.endswith("\nanswer:").all()


def test_lm_generated_answers_follow_the_class():
    cfg = data_cfg("lm_generated", "sentence_transform", (10, 5, 5), classes=["reverse", "sort"])
    frame = prepare_splits(cfg, "sentence_transform", seed=0)["train"]
    for _, row in frame.iterrows():
        words = row["prompt"].split(" : ")[1].split("\n")[0].split()
        expected = list(reversed(words)) if row["class_name"] == "reverse" else sorted(words)
        assert row["answer"].split() == expected
    math = prepare_splits(data_cfg("lm_generated", "math_reasoning", (8, 4, 4)), "math_reasoning", seed=0)["train"]
    for _, row in math.iterrows():
        a, op, b, _, result = row["answer"].split()[:5]
        assert eval(f"{a} {op} {b}") == float(result)  # noqa: S307 (our own generated arithmetic)


def test_lm_generated_bad_input():
    with pytest.raises(ConfigError, match="data.options.classes.*unknown class 'modulo'"):
        SOURCES["lm_generated"].check(data_cfg("lm_generated", "math", classes=["addition", "modulo"]))
    with pytest.raises(ConfigError, match="data.tasks"):
        SOURCES["lm_generated"].check(data_cfg("lm_generated", "poetry"))
    with pytest.raises(ConfigError, match=r"lacks the placeholder \{input\}"):
        SOURCES["lm_generated"].check(data_cfg("lm_generated", "math", prompt_template="question:"))
    with pytest.raises(ConfigError, match=r"unknown placeholder \{question\}"):
        SOURCES["lm_generated"].check(data_cfg("lm_generated", "math", prompt_template="{input} {question}"))


# --------------------------------------------------------------------------- images

def test_digits_pools_and_prompts():
    cfg = data_cfg("digits", "digits", (20, 10, 10), classes=[3, 7])
    SOURCES["digits"].check(cfg)
    splits = prepare_splits(cfg, "digits", seed=0)
    assert (splits["train"]["class_name"].astype(str).value_counts() == 10).all()
    assert set(splits["train"]["prompt"]) == {"a photo of digit three", "a photo of digit seven"}
    assert splits["train"]["image"].str.startswith("digits:").all()
    with pytest.raises(DataError, match="class '0' has .* samples but 1000"):
        SOURCES["digits"].check(data_cfg("digits", "digits", (9000, 500, 500)))
    with pytest.raises(ConfigError, match=r"data.options.prompt_template.*lacks the placeholder \{token\}"):
        SOURCES["digits"].check(data_cfg("digits", "digits", prompt_template="a photo of a digit"))
    with pytest.raises(ConfigError, match="unknown class 12;"):
        SOURCES["digits"].check(data_cfg("digits", "digits", classes=[1, 12]))


def _image(path, value):
    from PIL import Image

    Image.fromarray(np.full((12, 10, 3), value, np.uint8)).save(path)


def test_dreambooth_folder(tmp_path):
    for subject, n in (("dog2", 5), ("backpack", 4), ("cat", 6)):
        (tmp_path / subject).mkdir()
        for k in range(n):
            _image(tmp_path / subject / f"{k:02d}.jpg", 10 * k)
    cfg = data_cfg("dreambooth", "subject", (9, 3, 3), root=str(tmp_path))
    SOURCES["dreambooth"].check(cfg)
    splits = prepare_splits(cfg, "subject", seed=0)
    assert (splits["train"]["class_name"].value_counts() == 3).all()
    assert (splits["val"]["class_name"].value_counts() == 1).all()
    prompts = splits["train"].groupby("class_name")["prompt"].first()
    assert prompts["dog2"].startswith("a ") and prompts["dog2"].endswith(" dog")
    assert prompts.str.split().str[1].nunique() == 3  # a unique random token per subject
    with pytest.raises(ConfigError, match="data.sizes.train.*must be 9"):
        SOURCES["dreambooth"].check(data_cfg("dreambooth", "subject", (12, 3, 3), root=str(tmp_path)))
    with pytest.raises(ConfigError, match="unknown class 'robot'"):
        SOURCES["dreambooth"].check(data_cfg("dreambooth", "subject", root=str(tmp_path), subjects=["cat", "robot"]))
    with pytest.raises(DataError, match="class 'backpack' has 4 samples but 5"):
        SOURCES["dreambooth"].check(data_cfg("dreambooth", "subject", (12, 3, 3), root=str(tmp_path),
                                             train_per_subject=4))
    with pytest.raises(ConfigError, match=r"lacks the placeholder \{token\}"):
        SOURCES["dreambooth"].check(data_cfg("dreambooth", "subject", (9, 3, 3), root=str(tmp_path),
                                             prompt_template="a photo of a {noun}"))


def test_style_folders(tmp_path):
    styles = {}
    for k, style in enumerate(["cartoon", "pixelart"]):
        folder = tmp_path / style
        folder.mkdir()
        for i in range(5):
            _image(folder / f"{i}.png", 40 * k + i)
            (folder / f"{i}.txt").write_text(f"picture {i}")
        styles[style] = str(folder)
    cfg = data_cfg("image_styles", "style", (4, 2, 2), styles=styles)
    SOURCES["image_styles"].check(cfg)
    test = prepare_splits(cfg, "style", seed=0)["test"]
    assert test["prompt"].str.match(r"^Generate an image in a specific (cartoon|pixelart) style\. picture \d$").all()
    with pytest.raises(ConfigError, match=r"data.options.prompt_template.*lacks the placeholder \{custom\}"):
        SOURCES["image_styles"].check(data_cfg("image_styles", "style", styles=styles, prompt_template="{text}"))
    with pytest.raises(DataError, match="class 'cartoon' has 5 samples but 6"):
        SOURCES["image_styles"].check(data_cfg("image_styles", "style", (8, 2, 2), styles=styles))


# --------------------------------------------------------------------------- whole configs

@pytest.mark.parametrize("name", ["causal-lm.yaml", "diffusion.yaml", "paper-svamp-llama.yaml",
                                  "paper-sd-style.yaml", "paper-sd-subject.yaml"])
def test_profiles_validate_offline(name):
    needs_diffusers(name)
    cfg = validate_config(profile(name), planning_only=True)  # paper profiles name a GPU
    assert cfg["experiment"] == "influential_data" and cfg["data"]["noise_fraction"] == 0


def test_dev_svamp_overlay():
    """configs/dev/svamp-tiny.yaml on configs/causal-lm.yaml: valid, balanced, and no SVAMP prompt truncated."""
    import yaml

    from inflbench.models import get_family

    path = svamp_path()
    overlay = yaml.safe_load((ROOT / "configs" / "dev" / "svamp-tiny.yaml").read_text())
    overlay["data"]["options"]["path"] = str(path)
    cfg = validate_config(profile("causal-lm.yaml", **overlay))
    splits = prepare_splits(cfg["data"], "svamp", cfg["seed"])
    assert splits["train"]["class_name"].value_counts().to_dict() == dict.fromkeys(
        ["Addition", "Subtraction", "Multiplication", "Division"], 16)
    tok = get_family(cfg["model"]).tokenizer()
    frame = pd.concat(splits.values())
    longest = max(len(tok(p + " " + a)["input_ids"]) for p, a in zip(frame["prompt"], frame["answer"]))
    assert longest <= cfg["model"]["max_length"]


def test_bad_input_names_the_key_before_any_job():
    with pytest.raises(ConfigError, match="data.options.classes"):
        validate_config(profile("causal-lm.yaml", data={"options": {"classes": ["reverse", "shout"]}}))
    needs_diffusers()
    with pytest.raises(ConfigError, match="data.options.prompt_template"):
        validate_config(profile("diffusion.yaml", data={"options": {"prompt_template": "a digit"}}))
    with pytest.raises(DataError, match="class"):
        validate_config(profile("diffusion.yaml", data={"sizes": {"train": 2000}}))


def test_model_based_method_refused_for_several_rows_per_sample(monkeypatch):
    import inflbench.methods.ekfac as ekfac

    needs_diffusers()
    monkeypatch.setattr(ekfac, "kronfluence_available", lambda: True)
    with pytest.raises(ConfigError, match=r"methods.ekfac.*'diffusion_unet', which uses \d+ model rows per sample"):
        validate_config(profile("diffusion.yaml", methods={"ekfac": {}}))
    assert "ekfac" in validate_config(profile("causal-lm.yaml", methods={"ekfac": {}}))["methods"]
