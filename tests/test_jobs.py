"""The one entry point of the scripts/ adapters: everything the call prints (and the traceback) goes to the
job's log, the terminal gets one line, partial outputs are removed, the exit status is non-zero."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from common import ROOT

STAGES = textwrap.dedent('''
    import os, sys
    from pathlib import Path
    from inflbench.errors import ConfigError
    from inflbench.jobs import call

    def write_then(kind):
        def stage(inputs, outputs, params):
            Path(outputs["table"]).write_text("partial")
            Path(outputs["table"]).with_name("table.config.json").write_text("{}")
            print("stdout line", params["x"])
            print("stderr line", file=sys.stderr)
            os.write(2, b"fd-level line\\n")
            if kind == "input":
                raise ConfigError("data.sizes", "too small")
            if kind == "bug":
                raise KeyError("missing")
        return stage

    kind, out, log = sys.argv[1:]
    call(write_then(kind), {}, {"table": out, "others": [out + ".b"]}, {"x": 7}, log)
    print("after the call")
''')


def _run(tmp_path, kind):
    out, log = tmp_path / "table.csv", tmp_path / "logs" / "stage" / "job.log"
    proc = subprocess.run([sys.executable, "-c", STAGES, kind, str(out), str(log)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    return proc, out, log


def test_success_logs_everything_and_keeps_outputs(tmp_path):
    proc, out, log = _run(tmp_path, "ok")
    assert proc.returncode == 0 and out.read_text() == "partial"
    text = log.read_text()
    for line in ("stdout line 7", "stderr line", "fd-level line"):
        assert line in text
    assert proc.stdout == "after the call\n" and proc.stderr == ""  # nothing of the stage on the terminal


def test_bad_input_is_one_line_and_outputs_are_removed(tmp_path):
    proc, out, log = _run(tmp_path, "input")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == ["inflbench: invalid input: config key 'data.sizes': too small"]
    assert not out.exists() and not (tmp_path / "table.config.json").exists()
    text = log.read_text()
    assert "stdout line 7" in text and "Traceback" in text and "ConfigError" in text


def test_other_errors_name_the_type_and_the_log(tmp_path):
    proc, out, log = _run(tmp_path, "bug")
    assert proc.returncode == 1 and "after the call" not in proc.stdout
    assert proc.stderr.splitlines() == [f"inflbench: KeyError: 'missing' (see {log})"]
    assert not out.exists()
    assert "Traceback" in log.read_text() and "KeyError: 'missing'" in log.read_text()


def test_mappings_merge_wildcards_into_params():
    from types import SimpleNamespace

    from inflbench.jobs import mappings

    class Named(dict):
        pass

    smk = SimpleNamespace(input=Named(train="a.csv", scores=["s1", "s2"]), output=Named(table="t.csv"),
                          params=Named(points=5), wildcards=Named(task="t1"))
    assert mappings(smk) == ({"train": "a.csv", "scores": ["s1", "s2"]}, {"table": "t.csv"},
                             {"points": 5, "task": "t1"})
    smk.params["task"] = "clash"
    with pytest.raises(ValueError, match="shadows the wildcard"):
        mappings(smk)


GROWTH = textwrap.dedent('''
    import resource, sys, torch
    if sys.argv[1] == "bounded":
        from inflbench.resources import bound_freed_memory
        assert bound_freed_memory()
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    survivors = []
    for _ in range(20):  # 32 MB blocks read one after the other, each leaving its per-sample norms behind
        block = torch.ones(2000, 4096)
        survivors.append(block.square().sum(1, dtype=torch.float64))
        del block
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024)
''')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator setting")
def test_freed_blocks_leave_the_process():
    """Every job bounds glibc's mmap threshold: 32 MB blocks read one after the other are returned to the OS
    instead of piling up in the heap behind small survivors."""
    def growth(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", GROWTH, mode], capture_output=True, text=True, check=True,
                             env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""})
        return float(out.stdout.split()[-1])

    assert growth("bounded") < 200  # a block and its temporaries (unbounded: 190-816 MB here, layout-dependent)
