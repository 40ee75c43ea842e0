"""An offline binary sentiment task generated from a seed, so the default run needs no download.

Sentences combine a subject, an evaluative phrase whose polarity is the label, and neutral filler,
e.g. "the soundtrack felt wonderful , even on a rainy evening". About `ambiguity` of the sentences
mix both polarities (label = majority), so the task is learnable but not trivial.
"""

from __future__ import annotations

import numpy as np

from inflbench.data.base import DataSource, register_source
from inflbench.errors import ConfigError

SUBJECTS = ["the film", "this movie", "the plot", "the acting", "the soundtrack", "the ending", "the script",
            "the director's new work", "the cast", "the story", "the dialogue", "the pacing", "the camera work"]
POSITIVE = ["wonderful", "moving", "brilliant", "delightful", "charming", "gripping", "superb", "heartfelt",
            "beautifully made", "a real joy", "clever", "warm and funny", "unforgettable", "sharp"]
NEGATIVE = ["dull", "tedious", "clumsy", "boring", "awful", "forgettable", "a waste of time", "lifeless",
            "painfully slow", "messy", "shallow", "annoying", "flat", "predictable"]
VERBS = ["was", "felt", "seemed", "is", "turned out"]
FILLERS = ["", ", even on a rainy evening", ", according to my friends", "from start to finish",
           ", at least for me", "in the second half", ", as expected", "for most of the running time"]


def generate_sentiment(n: int, seed: int, ambiguity: float = 0.15) -> list[dict]:
    """``n`` labelled records (balanced classes) ``{"text_a", "text_b": None, "label"}``."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        label = i % 2
        main, other = (POSITIVE, NEGATIVE) if label == 1 else (NEGATIVE, POSITIVE)
        words = [main[rng.integers(len(main))]]
        if rng.random() < ambiguity:
            words += [other[rng.integers(len(other))], main[rng.integers(len(main))]]
            rng.shuffle(words)
        phrase = " and ".join(words) if len(words) < 3 else f"{words[0]}, {words[1]} and {words[2]}"
        text = " ".join(s for s in (SUBJECTS[rng.integers(len(SUBJECTS))], VERBS[rng.integers(len(VERBS))],
                                    phrase, FILLERS[rng.integers(len(FILLERS))]) if s)
        records.append({"text_a": text.replace(" ,", ","), "text_b": None, "label": label})
    order = rng.permutation(n)
    return [records[k] for k in order]


@register_source("generated")
class GeneratedSource(DataSource):
    """``data.source: generated``: the offline sentiment task ``generated``."""

    offline = True

    def check(self, data_cfg):
        for task in data_cfg["tasks"]:
            if task != "generated":
                raise ConfigError("data.tasks", f"source 'generated' provides the task 'generated', not {task!r}")

    def load_pools(self, data_cfg, task, seed):
        sizes = data_cfg["sizes"]
        n = sizes["train"] + sizes["val"] + sizes["test"]
        records = generate_sentiment(n, seed=seed, ambiguity=data_cfg.get("generated", {}).get("ambiguity", 0.15))
        cut = sizes["train"] + sizes["val"] * (data_cfg.get("validation_from", "train") == "train")
        return records[:cut], records[cut:]
