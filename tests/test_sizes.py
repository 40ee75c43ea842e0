"""Per-task sizes capped at what a task's pools hold, validation from the dev pool, the sizes table."""

import pandas as pd
import pytest

from common import needs_shared
from inflbench.data import prepare_splits
from inflbench.data.splits import plan_sizes
from inflbench.errors import DataError
from inflbench.stages import stage_prepare_data

PAPER = {"train": 4500, "val": 500, "test": 500}


def test_plan_sizes_caps_each_pool_proportionally():
    plan = plan_sizes({"sizes": PAPER, "cap_sizes": True}, 3668, 408, "MRPC")
    assert plan.set_index("split")["used"].to_dict() == {"train": 3301, "val": 366, "test": 408}
    assert list(plan["pool"]) == ["train", "train", "dev"] and list(plan["requested"]) == [4500, 500, 500]
    dev = plan_sizes({"sizes": PAPER, "cap_sizes": True, "validation_from": "dev"}, 2490, 277, "RTE")
    assert dev.set_index("split")["used"].to_dict() == {"train": 2490, "val": 138, "test": 138}
    assert list(dev["pool"]) == ["train", "dev", "dev"]
    fits = plan_sizes({"sizes": {"train": 40, "val": 8, "test": 10}, "cap_sizes": True}, 100, 50, "t")
    assert list(fits["used"]) == [40, 8, 10]  # nothing to cap
    with pytest.raises(DataError, match=r"MRPC train pool: asked for 5000 samples but only 3668 are available \(train \+ val;"):
        plan_sizes({"sizes": PAPER}, 3668, 408, "MRPC")


def _generated(**data):
    return {"source": "generated", "tasks": ["generated"], "sizes": {"train": 40, "val": 8, "test": 10},
            "noise_fraction": 0.2, "generated": {"ambiguity": 0.15}, "options": {}, **data}


def test_validation_from_dev_draws_val_and_test_from_one_pool():
    train_val = prepare_splits(_generated(), "generated", 0)
    dev = prepare_splits(_generated(validation_from="dev"), "generated", 0)
    assert [len(dev[s]) for s in ("train", "val", "test")] == [40, 8, 10]
    texts = {s: set(dev[s]["text_a"]) for s in dev}
    assert not texts["val"] & texts["test"]
    assert texts["train"] != set(train_val["train"]["text_a"])  # val no longer taken from the train pool
    assert not dev["val"]["flipped"].any() and dev["train"]["flipped"].sum() == 8


@pytest.mark.parametrize("task,train_pool,dev_pool", [("MRPC", 3668, 408)])
def test_paper_sizes_prepare_on_local_glue(tmp_path, task, train_pool, dev_pool):
    glue = needs_shared("glue", task)
    data = {"source": "glue_dir", "tasks": [task], "glue_dir": str(glue.parent), "sizes": PAPER,
            "noise_fraction": 0.2, "cap_sizes": True, "validation_from": "dev", "options": {}}
    outputs = {s: str(tmp_path / f"{s}.csv") for s in ("train", "val", "test", "sizes")}
    stage_prepare_data({}, outputs, {"data": data, "task": task, "seed": 0})
    sizes = pd.read_csv(outputs["sizes"]).set_index("split")
    assert sizes["pool_size"].to_dict() == {"train": train_pool, "val": dev_pool, "test": dev_pool}
    for split in ("train", "val", "test"):
        assert len(pd.read_csv(outputs[split])) == sizes.loc[split, "used"]
    assert sizes.loc["train", "used"] == train_pool and sizes.loc["val", "used"] + sizes.loc["test", "used"] == dev_pool
