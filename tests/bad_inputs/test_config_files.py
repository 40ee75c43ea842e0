"""Config-file level checks without Snakemake (the grid driver and tests read files through these)."""

from __future__ import annotations

import pytest

from inflbench.checks import check_config_files, dry_run_requested, load_yaml_strict
from inflbench.errors import InputError


def test_duplicate_key_in_a_nested_mapping_names_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n")
    with pytest.raises(InputError, match=r"c.yaml:4: duplicate key 'lr' \(first given on line 2\)"):
        load_yaml_strict(path)


@pytest.mark.parametrize("text,message", [
    ("- a\n- b\n", "must be a mapping of keys, not a list"),
    ("train: [1\n", "not valid YAML"),
    ("\ufeffseed: 1\n", None),  # a byte-order mark is fine
    ("", None),
])
def test_file_problems_name_the_file(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    if message is None:
        assert load_yaml_strict(path) in ({}, {"seed": 1})
        return
    with pytest.raises(InputError, match=message) as info:
        load_yaml_strict(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_non_utf8_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"run: caf\xe9\n")
    with pytest.raises(InputError, match="c.yaml: not UTF-8"):
        load_yaml_strict(path)


def test_empty_mapping_only_refused_where_it_would_be_merged_away(tmp_path):
    base, over = tmp_path / "base.yaml", tmp_path / "over.yaml"
    base.write_text("methods: {tracin: {}, lissa: {depth: 3}}\n")
    over.write_text("methods: {tracin: {}}\n")  # empty over empty: nothing lost
    check_config_files([base, over])
    check_config_files([over, base])  # the base itself may hold empty mappings
    over.write_text("methods: {lissa: {}}\n")
    with pytest.raises(InputError, match=r"over.yaml: config key 'methods.lissa' is an empty mapping"):
        check_config_files([base, over])


@pytest.mark.parametrize("argv,dry", [
    (["snakemake", "-n"], True), (["snakemake", "-np", "--cores", "1"], True), (["snakemake", "--dry-run"], True),
    (["snakemake", "--cores", "1"], False), (["snakemake", "-c1", "--configfile", "n.yaml"], False),
])
def test_dry_run_detection(argv, dry):
    assert dry_run_requested(argv) is dry
