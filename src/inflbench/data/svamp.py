"""SVAMP math word problems (Patel et al. 2021) as a four-class text-generation task (RRInf §4.2, App. A).

The class is the problem type: Addition, Subtraction, Multiplication, Division (the source file
spells the last one ``Common-Division`` and, once, ``Common-Divison``; both map to ``Division``).
Per class, disjoint train+val and test draws of equal size are taken (RRInf: 75 train / 25 test per
class, i.e. ``data.sizes`` train 300, test 100, plus a small validation split for checkpoint
selection). Each record is a prompt (the problem) and an answer (by default the equation and the
result), which the causal-LM family trains on with the loss on answer tokens only.

``data.options``:

* ``path`` -- local ``SVAMP.json`` (list of objects with ID, Body, Question, Equation, Answer, Type);
  when null, ``hub_id`` is loaded with ``datasets`` (all its splits pooled).
* ``hub_id`` -- default ``ChilleD/SVAMP``.
* ``classes`` -- subset of the four class names (case-insensitive; default: all four).
* ``prompt_template`` -- placeholders ``{body}``, ``{question}`` (required), ``{problem}`` (= body + question).
* ``answer_template`` -- placeholders ``{answer}``, ``{equation}``; at least one is required.
"""

from __future__ import annotations

import json
from pathlib import Path

from inflbench.data.base import DataSource, register_source
from inflbench.errors import ConfigError, DataError
from inflbench.schemas import resolve_options
from inflbench.data.balanced import balanced_pools, check_counts, check_template, per_class_quota, \
    select_classes

CLASSES = ("Addition", "Subtraction", "Multiplication", "Division")
TYPE_SPELLINGS = {"addition": "Addition", "subtraction": "Subtraction", "multiplication": "Multiplication",
                  "division": "Division", "common-division": "Division", "common-divison": "Division"}
PROMPT_FIELDS = ("body", "question", "problem")
ANSWER_FIELDS = ("answer", "equation")
REQUIRED_KEYS = ("Body", "Question", "Equation", "Answer", "Type")


def normalise_type(raw: str) -> str | None:
    """Canonical class name of a SVAMP ``Type`` (or a user-given class name); None when unknown."""
    return TYPE_SPELLINGS.get(str(raw).strip().lower())


def options(data_cfg: dict) -> dict:
    return resolve_options("data", "svamp", data_cfg.get("options"))


def format_number(value) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def read_svamp(path: str | Path) -> list[dict]:
    """Problems of a local SVAMP.json with a canonical ``Type``; DataError names the file and entry."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: SVAMP file does not exist (data.options.path)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, list):
        raise DataError(f"{path}: expected a JSON list of problems")
    return [_normalise_record(entry, f"{path}: entry {k}") for k, entry in enumerate(raw)]


def _normalise_record(entry, where: str) -> dict:
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object")
    missing = [k for k in REQUIRED_KEYS if k not in entry]
    if missing:
        raise DataError(f"{where}: missing field {missing[0]!r}")
    kind = normalise_type(entry["Type"])
    if kind is None:
        raise DataError(f"{where}: unknown Type {entry['Type']!r}")
    return {**entry, "Type": kind}


def load_hub(hub_id: str) -> list[dict]:
    try:
        import datasets
    except ImportError as exc:
        raise ConfigError("data.options.path", "set a local SVAMP.json, or install 'datasets' to load "
                                               f"{hub_id} from the hub") from exc
    parts = datasets.load_dataset(hub_id)
    records = []
    for split in parts:
        records += [_normalise_record(dict(r), f"{hub_id}[{split}] row {k}") for k, r in enumerate(parts[split])]
    return records


def to_record(problem: dict, classes: list[str], opts: dict) -> dict:
    body, question = str(problem["Body"]).strip(), str(problem["Question"]).strip()
    fields = {"body": body, "question": question, "problem": f"{body} {question}",
              "answer": format_number(problem["Answer"]), "equation": str(problem["Equation"]).strip()}
    uid = problem.get("ID", f"{body}|{question}")
    return {"uid": f"svamp/{uid}", "prompt": opts["prompt_template"].format(**fields),
            "answer": opts["answer_template"].format(**fields), "class_name": problem["Type"],
            "label": classes.index(problem["Type"])}


@register_source("svamp")
class SvampSource(DataSource):
    """``data.source: svamp``; task name ``svamp``."""

    tasks = ("svamp",)

    def check(self, data_cfg: dict) -> None:
        for task in data_cfg["tasks"]:
            if task not in self.tasks:
                raise ConfigError("data.tasks", f"source 'svamp' provides the task 'svamp', not {task!r}")
        opts = options(data_cfg)
        classes = select_classes("data.options.classes", opts["classes"], CLASSES, lambda c: normalise_type(c) or c)
        check_template("data.options.prompt_template", opts["prompt_template"], ["question"], PROMPT_FIELDS)
        check_template("data.options.answer_template", opts["answer_template"], [], ANSWER_FIELDS)
        if not any(f"{{{f}}}" in opts["answer_template"] for f in ANSWER_FIELDS):
            raise ConfigError("data.options.answer_template", "template lacks the placeholder {answer} or {equation}")
        if opts["path"] is not None:  # a local file is cheap to count: too small classes fail before any job
            counts = {c: 0 for c in classes}
            for p in read_svamp(opts["path"]):
                if p["Type"] in counts:
                    counts[p["Type"]] += 1
            check_counts(counts, sum(per_class_quota(data_cfg["sizes"], len(classes))), str(opts["path"]))

    def load_pools(self, data_cfg: dict, task: str, seed: int) -> tuple[list[dict], list[dict]]:
        opts = options(data_cfg)
        classes = select_classes("data.options.classes", opts["classes"], CLASSES, lambda c: normalise_type(c) or c)
        problems = read_svamp(opts["path"]) if opts["path"] is not None else load_hub(opts["hub_id"])
        by_class = {c: [to_record(p, classes, opts) for p in problems if p["Type"] == c] for c in classes}
        return balanced_pools(by_class, data_cfg["sizes"], seed, str(opts["path"] or opts["hub_id"]))
