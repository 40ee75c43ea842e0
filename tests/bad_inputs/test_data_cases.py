"""Bad data files: refused before any job where the files can be read then (``snakemake -n`` on a
``glue_dir`` source), and by the data stage itself, with one line naming the file; no split is written."""

from __future__ import annotations

import pytest

from badtools import assert_one_line, snakemake
from inflbench.errors import DataError

HEADER = "sentence\tlabel\n"


def _glue(tmp_path, train: bytes, dev: bytes | None = None):
    root = tmp_path / "glue" / "SST-2"
    root.mkdir(parents=True)
    (root / "train.tsv").write_bytes(train)
    mixed = HEADER + "".join(f"dev sentence {i}\t{i % 2}\n" for i in range(40))
    (root / "dev.tsv").write_bytes(dev if dev is not None else mixed.encode())
    return tmp_path / "glue"


def _rows(n, label=None):
    return "".join(f"train sentence {i}\t{label if label is not None else i % 2}\n" for i in range(n))


def _overlay(glue_dir):
    return {"data": {"source": "glue_dir", "glue_dir": str(glue_dir), "tasks": ["SST-2"], "noise_fraction": 0.25,
                     "sizes": {"train": 24, "val": 8, "test": 8}}, "layers": {"enabled": False}}


CASES = {
    "single_class_train": ((HEADER + _rows(60, label=1)).encode(), None, ["train.tsv", "every row has label 1"]),
    "single_class_dev": ((HEADER + _rows(60)).encode(), (HEADER + _rows(40, label=0)).encode(),
                         ["dev.tsv", "every row has label 0"]),
    "pool_too_small": ((HEADER + _rows(20)).encode(), None, ["train.tsv", "asked for 32 samples but only 20"]),
    "non_utf8_byte": ((HEADER + _rows(40) + "caf\xe9\t1\n").encode("latin-1"), None,
                      ["train.tsv:42: not UTF-8 text"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_data_case_refused_before_any_job(tmp_path, case):
    train, dev, fragments = CASES[case]
    proc = snakemake(tmp_path, _overlay(_glue(tmp_path, train, dev)))
    assert_one_line(proc, *fragments, tmp_path=tmp_path)


def test_byte_order_mark_is_read(tmp_path):
    glue = _glue(tmp_path, ("\ufeff" + HEADER + _rows(60)).encode("utf-8"))
    from inflbench.data import prepare_splits

    tables = prepare_splits(_overlay(glue)["data"], "SST-2", seed=0)
    assert len(tables["train"]) == 24 and tables["train"]["flipped"].sum() == 6
    assert not any(str(t).startswith("\ufeff") for t in tables["train"]["text_a"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_data_stage_job_refuses_with_one_line_and_writes_nothing(tmp_path, capfd, case):
    """Through the job entry point: the traceback goes to the job's log, one line to the terminal."""
    from inflbench.jobs import call
    from inflbench.stages import stage_prepare_data

    train, dev, fragments = CASES[case]
    outputs = {s: str(tmp_path / "out" / f"{s}.csv") for s in ("train", "val", "test")}
    params = {"data": _overlay(_glue(tmp_path, train, dev))["data"], "task": "SST-2", "seed": 0}
    log = tmp_path / "logs" / "prepare_data.log"
    with pytest.raises(SystemExit) as info:
        call(stage_prepare_data, {}, outputs, params, log)
    assert info.value.code == 1
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("inflbench: invalid input: "), lines
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" in log.read_text() and "DataError" in log.read_text()
    assert not any((tmp_path / "out").glob("*"))


def test_a_split_drawn_with_one_class_is_refused_by_the_data_stage(tmp_path):
    """Pools with two classes, but a validation split too small to hold both (1 sample)."""
    from inflbench.data import prepare_splits

    glue = _glue(tmp_path, (HEADER + _rows(60)).encode())
    cfg = {**_overlay(glue)["data"], "sizes": {"train": 24, "val": 1, "test": 8}}
    with pytest.raises(DataError, match=r"SST-2 val split: all 1 samples have label"):
        prepare_splits(cfg, "SST-2", seed=0)
