"""Run Snakemake on a bad input and check the promise: one ``inflbench:`` line naming the key or file,
no traceback, non-zero exit, nothing written."""

from __future__ import annotations

from pathlib import Path

import yaml

import common


def snakemake(tmp_path: Path, *configs: str | dict, dry_run: bool = True, extra: tuple = ()):
    """Snakemake in ``tmp_path`` with the given overlay files (YAML text or dicts); results under tmp_path."""
    files = []
    for i, cfg in enumerate(configs):
        path = tmp_path / f"overlay{i}.yaml"
        path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
        files.append(str(path))
    args = ["-n"] if dry_run else ["--cores", "1"]
    return common.snakemake(*args, "--configfile", *files, "--config", f"results_dir={tmp_path / 'results'}", *extra,
                            workdir=tmp_path, timeout=300)


def assert_one_line(proc, *fragments: str, tmp_path: Path | None = None) -> str:
    out = proc.stdout + proc.stderr
    lines = [ln for ln in out.splitlines() if ln.startswith("inflbench:")]
    assert proc.returncode != 0, out[-3000:]
    assert len(lines) == 1, out[-3000:]
    assert lines[0].startswith("inflbench: invalid input: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in out, out[-3000:]
    if tmp_path is not None:
        assert not (tmp_path / "results").exists()
    return lines[0]
