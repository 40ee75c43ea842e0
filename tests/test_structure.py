"""The package's structure: no import cycle between its modules (imports inside functions count), no module
reaching outside the package, modules of a readable size, schemas shipped as package data."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from common import ROOT

PACKAGE = ROOT / "src" / "inflbench"
#: modules allowed above MAX_LINES, with the reason (none at present)
LONG_MODULES: dict[str, str] = {}
MAX_LINES = 400


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Package modules ``name`` imports anywhere in its file (``from a import b`` counts a.b when a.b is a
    module, else a)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in known else base)
    return {m for m in out if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "inflbench.data.base" in graph["inflbench.data.digits"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_no_module_reaches_outside_the_package():
    offenders = []
    for name, path in modules().items():
        text = path.read_text()
        if "parents[" in text or "../" in text.replace('"../', "").replace("'../", ""):
            offenders.append(name)
    assert offenders == []


def test_module_sizes():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert set(long) <= set(LONG_MODULES), long


def test_schemas_are_package_data():
    from inflbench.schemas import load_schema, schema_defaults

    assert load_schema("config.schema.yaml")["properties"]["seed"]["default"] == 0
    assert schema_defaults("synthetic.schema.yaml")["iterations"] == 40
    assert not (ROOT / "schemas").exists()  # one copy, inside the package


@pytest.mark.slow
def test_wheel_ships_the_schemas_and_validates_a_config(tmp_path):
    """Build a wheel (no network: the venv's setuptools), then validate the default config from the wheel
    alone (its directory first on sys.path, run outside the repository)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("inflbench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "inflbench/schemas/config.schema.yaml" in names and "inflbench/schemas/synthetic.schema.yaml" in names
    assert {"inflbench/schemas/model_options/causal_lm.schema.yaml",
            "inflbench/schemas/data_options/generated.schema.yaml"} <= set(names)  # the options fragments
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = ("import sys, yaml; sys.path.insert(0, sys.argv[1]); import inflbench.config as c; "
            "assert c.__file__.startswith(sys.argv[1]), c.__file__; "
            "cfg = c.validate_config(yaml.safe_load(open(sys.argv[2]))); print(cfg['synthetic']['iterations'])")
    proc = subprocess.run([sys.executable, "-c", code, str(unpacked), str(ROOT / "config.yaml")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "40"
    # the console script is declared, and the workflow plans its jobs with the wheel's package first on the path
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "inflbench = inflbench.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-q", "--snakefile", str(ROOT / "Snakefile"),
                           "--directory", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "PATH": __import__("os").environ["PATH"], "PYTHONPATH": str(unpacked)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
