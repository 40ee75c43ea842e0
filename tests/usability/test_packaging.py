"""Packaging: one set of extras across pyproject, Makefile and the conda files; LICENSE; the CLI entry point."""

from __future__ import annotations

import re
import tomllib

import yaml

from common import ROOT


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _env_extras(name: str) -> set[str]:
    deps = yaml.safe_load((ROOT / "envs" / name).read_text())["dependencies"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    editable = next(p for p in pip if p.startswith("-e"))
    return set(re.search(r"\[(.*)\]", editable).group(1).split(","))


def _makefile_extras() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    extras = set(re.search(r"^CPU_EXTRAS := (.*)$", text, re.M).group(1).split(","))
    assert "pip install -e '.[$(CPU_EXTRAS)]'" in text
    return extras


def test_extras_agree_across_pyproject_makefile_and_conda_envs():
    declared = _pyproject()["project"]["optional-dependencies"]
    make, cpu, cuda = _makefile_extras(), _env_extras("inflbench-cpu.yaml"), _env_extras("inflbench-cuda.yaml")
    assert make | cpu | cuda <= set(declared)
    # the Makefile installs the ekfac extra itself, without dependencies (kronfluence's torchvision pin)
    kron = re.search(r"pip install --no-deps '(kronfluence[^']*)'", (ROOT / "Makefile").read_text()).group(1)
    assert declared["ekfac"] == [kron]
    assert make | {"ekfac"} == cpu
    assert cpu < cuda and cuda - cpu == {"hub", "quant"}


def test_license_and_console_script():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "inflbench developers" in (ROOT / "LICENSE").read_text()
    project = _pyproject()["project"]
    assert project["license"] == {"text": "MIT"}
    module, _, fn = project["scripts"]["inflbench"].partition(":")
    import importlib

    assert callable(getattr(importlib.import_module(module), fn))


def test_readme_documents_the_cpu_only_torch_install():
    readme = (ROOT / "README.md").read_text()
    assert "download.pytorch.org/whl/cpu" in readme and "TORCH_INDEX" in (ROOT / "Makefile").read_text()
