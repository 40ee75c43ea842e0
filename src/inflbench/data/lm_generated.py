"""Offline text-generation tasks in the style of DataInf's identification experiments, generated from a seed.

Tasks (``data.tasks`` with ``data.source: lm_generated``), class = what the answer has to do:

* ``sentence_transform`` -- a random word sequence and an instruction; classes ``reverse`` (word order
  reversed), ``sort`` (alphabetical), ``double`` (every word twice), ``rotate`` (first word moved to the
  end), ``first_letters`` (the first letter of every word).
* ``math`` -- one-step word problems, answer = the number; classes ``addition``, ``subtraction``,
  ``multiplication``, ``division``.
* ``math_reasoning`` -- the same problems, answer = the equation, then the number.

Everything is lower case, so the uncased offline WordPiece tokenizer sees the same text. Each class
gets the same number of train+val and test records (see ``per_class_quota``); train+val and test are
generated from independent seeded streams.

``data.options``: ``classes`` (a list applied to every task, or a mapping task -> list; default: all),
``prompt_template`` (placeholder ``{input}`` required: the instruction and its input).
"""

from __future__ import annotations

import numpy as np

from inflbench.data.base import DataSource, register_source
from inflbench.errors import ConfigError
from inflbench.schemas import resolve_options
from inflbench.data.balanced import check_template, per_class_quota, select_classes

WORDS = ["apple", "river", "green", "table", "music", "quiet", "garden", "window", "bright", "stone", "paper",
         "yellow", "horse", "cloud", "silver", "market", "winter", "forest", "candle", "orange", "bridge", "simple",
         "planet", "ocean", "pencil", "happy", "mountain", "coffee", "summer", "letter", "little", "engine", "doctor",
         "camera", "island", "purple", "thunder", "basket", "gentle", "rocket"]
TRANSFORMS = {
    "reverse": ("reverse the order of the words", lambda w: list(reversed(w))),
    "sort": ("sort the words alphabetically", sorted),
    "double": ("repeat every word twice", lambda w: [x for x in w for _ in range(2)]),
    "rotate": ("move the first word to the end", lambda w: w[1:] + w[:1]),
    "first_letters": ("write the first letter of every word", lambda w: [x[0] for x in w]),
}
NAMES = ["anna", "ben", "carla", "david", "emma", "frank", "grace", "henry", "julia", "kevin", "laura", "mike"]
ITEMS = ["apples", "marbles", "books", "cookies", "pencils", "stickers", "flowers", "coins", "cards", "shells"]
PROBLEMS = {
    "addition": ["{name} has {a} {item} and finds {b} more . how many {item} does {name} have now ?",
                 "there are {a} {item} in a box and {b} {item} on the table . how many {item} are there in all ?"],
    "subtraction": ["{name} had {a} {item} and gave {b} of them away . how many {item} are left ?",
                    "a shop had {a} {item} and sold {b} . how many {item} does the shop still have ?"],
    "multiplication": ["{name} buys {a} bags with {b} {item} in each bag . how many {item} does {name} buy ?",
                       "there are {a} rows of {item} with {b} {item} in each row . how many {item} are there ?"],
    "division": ["{name} shares {a} {item} equally among {b} friends . how many {item} does each friend get ?",
                 "{a} {item} are packed into {b} equal boxes . how many {item} are in each box ?"],
}
OPERATORS = {"addition": "+", "subtraction": "-", "multiplication": "*", "division": "/"}
TASK_CLASSES = {"sentence_transform": list(TRANSFORMS), "math": list(PROBLEMS), "math_reasoning": list(PROBLEMS)}
def options(data_cfg: dict) -> dict:
    return resolve_options("data", "lm_generated", data_cfg.get("options"))


def task_classes(task: str, requested) -> list[str]:
    if isinstance(requested, dict):
        unknown = sorted(set(requested) - set(TASK_CLASSES))
        if unknown:
            raise ConfigError(f"data.options.classes.{unknown[0]}", f"unknown task; choose from {list(TASK_CLASSES)}")
        return select_classes(f"data.options.classes.{task}", requested.get(task), TASK_CLASSES[task])
    return select_classes("data.options.classes", requested, TASK_CLASSES[task])


def _transform_record(kind: str, rng: np.random.Generator) -> tuple[str, str]:
    words = [WORDS[k] for k in rng.choice(len(WORDS), size=int(rng.integers(4, 7)), replace=False)]
    instruction, fn = TRANSFORMS[kind]
    return f"{instruction} : {' '.join(words)}", " ".join(fn(words))


def _math_record(kind: str, rng: np.random.Generator, reasoning: bool) -> tuple[str, str]:
    a, b = int(rng.integers(2, 20)), int(rng.integers(2, 10))
    if kind == "subtraction":
        a += b
    if kind == "division":
        a *= b
    result = {"addition": a + b, "subtraction": a - b, "multiplication": a * b, "division": a // b}[kind]
    template = PROBLEMS[kind][int(rng.integers(len(PROBLEMS[kind])))]
    problem = template.format(name=NAMES[int(rng.integers(len(NAMES)))], item=ITEMS[int(rng.integers(len(ITEMS)))],
                              a=a, b=b)
    answer = f"{a} {OPERATORS[kind]} {b} = {result} . the answer is {result}" if reasoning else str(result)
    return problem, answer


def generate(task: str, kind: str, n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """``n`` (input, answer) pairs of one class."""
    if task == "sentence_transform":
        return [_transform_record(kind, rng) for _ in range(n)]
    return [_math_record(kind, rng, reasoning=task == "math_reasoning") for _ in range(n)]


@register_source("lm_generated")
class LMGeneratedSource(DataSource):
    """``data.source: lm_generated``."""

    offline = True

    def check(self, data_cfg: dict) -> None:
        opts = options(data_cfg)
        for task in data_cfg["tasks"]:
            if task not in TASK_CLASSES:
                raise ConfigError("data.tasks", f"source 'lm_generated' has no task {task!r}; "
                                                f"choose from {list(TASK_CLASSES)}")
            task_classes(task, opts["classes"])
        check_template("data.options.prompt_template", opts["prompt_template"], ["input"], ["input"])

    def load_pools(self, data_cfg: dict, task: str, seed: int) -> tuple[list[dict], list[dict]]:
        opts = options(data_cfg)
        classes = task_classes(task, opts["classes"])
        quotas = per_class_quota(data_cfg["sizes"], len(classes))
        pools: tuple[list[dict], list[dict]] = ([], [])
        for p, (pool, n) in enumerate(zip(pools, quotas)):
            for c, kind in enumerate(classes):
                rng = np.random.default_rng([seed, p, TASK_CLASSES[task].index(kind), sorted(TASK_CLASSES).index(task)])
                for k, (text, answer) in enumerate(generate(task, kind, n, rng)):
                    prompt = opts["prompt_template"].format(input=text)
                    pool.append({"uid": f"{task}/{seed}/{p}/{kind}/{k}", "prompt": prompt, "answer": answer,
                                 "class_name": kind, "label": c})
        return pools
