"""Bad config values and files, refused by ``snakemake -n`` before any job with one line naming the key/file."""

from __future__ import annotations

import pytest

from badtools import assert_one_line, snakemake

CASES = {
    "lr_inf": ("train:\n  lr: .inf\n", ["'train.lr'", "inf is not a finite number"]),
    "lr_nan": ("train:\n  lr: .nan\n", ["'train.lr'", "nan is not a finite number"]),
    "noise_nan": ("data:\n  noise_fraction: .nan\n", ["'data.noise_fraction'", "nan"]),
    "damping_inf": ("methods:\n  datainf: {damping: -.inf}\n", ["'methods.datainf.damping'", "-inf"]),
    "noise_rounds_to_zero": ("data:\n  noise_fraction: 0.001\n", ["'data.noise_fraction'", "= 0 labels"]),
    "duplicated_task": ("data:\n  tasks: [generated, generated]\n", ["'data.tasks'", "non-unique"]),
    "duplicate_yaml_key": ("seed: 1\ntrain: {lr: 0.01}\nseed: 2\n", ["overlay0.yaml:3: duplicate key 'seed'"]),
    "empty_methods_overlay": ("methods: {}\n", ["overlay0.yaml", "'methods' is an empty mapping"]),
    "missing_model_folder": ("model:\n  name_or_path: /nonexistent/minilm\n",
                             ["'model.name_or_path'", "/nonexistent/minilm does not exist"]),
    "not_a_model_package": ("model:\n  name_or_path: 'pkg:os'\n", ["'model.name_or_path'", "not a model package"]),
    "lora_targets_match_nothing": ("model:\n  lora: {target_modules: [query, no_such_module]}\n",
                                   ["'model.lora.target_modules'", "'no_such_module' matches no module"]),
    "damping_map_unknown_block": ("methods:\n  datainf: {damping: {encoder.bogus: 0.1}}\n",
                                  ["'methods.datainf.damping'", "unknown ['encoder.bogus']"]),
    "rrinf_zero_iterations": ("methods:\n  rrinf: {iterations: 0}\n", ["'methods.rrinf'", "'iterations'", ">= 1"]),
    "hyperinf_zero_iterations": ("methods:\n  hyperinf: {iterations: 0}\n", ["'methods.hyperinf'", ">= 1"]),
    "lissa_zero_depth": ("methods:\n  lissa: {depth: 0}\n", ["'methods.lissa'", "'depth'", ">= 1"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_case_refused_before_any_job(tmp_path, case):
    text, fragments = CASES[case]
    assert_one_line(snakemake(tmp_path, text), *fragments, tmp_path=tmp_path)


def test_later_overlay_is_checked_against_the_merged_earlier_ones(tmp_path):
    proc = snakemake(tmp_path, "methods: {lissa: {depth: 3}}\n", "methods:\n  lissa: {}\n")
    assert_one_line(proc, "overlay1.yaml", "'methods.lissa' is an empty mapping", "['depth']")


def test_valid_overlay_still_plans(tmp_path):
    proc = snakemake(tmp_path, "methods: {tracin: {}}\nlayers: {enabled: false}\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "prepare_data" in proc.stdout


def test_cuda_on_cpu_only_torch_is_refused_before_any_job(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    proc = snakemake(tmp_path, "device: cuda\n", dry_run=False)
    assert_one_line(proc, "config key 'device': cuda, but", tmp_path=tmp_path)
    planned = snakemake(tmp_path, "device: cuda\n")  # planning for a GPU machine only warns
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert "inflbench: warning: config key 'device'" in planned.stderr
    scores = snakemake(tmp_path, "device: cpu\nscores: {device: cuda}\n", dry_run=False)  # the scoring jobs too
    assert_one_line(scores, "config key 'scores.device': cuda, but", tmp_path=tmp_path)
