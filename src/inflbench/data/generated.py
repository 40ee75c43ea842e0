"""An offline binary sentiment task generated from a seed, so the default run needs no download.

Sentences combine a subject, an evaluative phrase whose polarity is the label, and neutral filler,
e.g. "the soundtrack felt wonderful , even on a rainy evening". About `ambiguity` of the sentences
mix both polarities (label = majority). Two kinds of sentence make the task hard (docs/results.md, "The
default task"): a share `neutral` carries no polarity at all, so its label is a coin flip given the text
(irreducible error `neutral` / 2, and near-duplicate texts with conflicting labels); a share `negated`
states the opposite polarity under a negation ("far from dull"), a minority phrasing the model must learn
from few examples and that a word-counting rule gets wrong.
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
NEUTRAL = ["was about what I expected", "was two hours long", "was shown in the main hall", "is in colour",
           "was released this spring", "was what everyone talked about", "was in English", "was on at nine"]
NEGATORS = ["was far from", "was not", "was anything but", "never felt", "was hardly"]
FILLERS = ["", ", even on a rainy evening", ", according to my friends", "from start to finish",
           ", at least for me", "in the second half", ", as expected", "for most of the running time"]


def generate_sentiment(n: int, seed: int, ambiguity: float = 0.15, neutral: float = 0.0,
                       negated: float = 0.0) -> list[dict]:
    """``n`` labelled records (balanced classes) ``{"text_a", "text_b": None, "label"}``; with ``neutral`` and
    ``negated`` at 0 the records are those of the original task (same random stream)."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        label = i % 2
        main, other = (POSITIVE, NEGATIVE) if label == 1 else (NEGATIVE, POSITIVE)
        kind = rng.random() if neutral + negated > 0 else 1.0
        if kind < neutral + negated:
            # neutral: the text is drawn independently of the label; negated: the other polarity, negated
            phrase = (NEUTRAL[rng.integers(len(NEUTRAL))] if kind < neutral else
                      f"{NEGATORS[rng.integers(len(NEGATORS))]} {other[rng.integers(len(other))]}")
            text = " ".join(s for s in (SUBJECTS[rng.integers(len(SUBJECTS))], phrase,
                                        FILLERS[rng.integers(len(FILLERS))]) if s)
            records.append({"text_a": text.replace(" ,", ","), "text_b": None, "label": label})
            continue
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
        options = data_cfg.get("generated", {})
        if options.get("neutral", 0.0) + options.get("negated", 0.0) > 1:
            raise ConfigError("data.generated", "neutral + negated must not exceed 1 (they are shares of the sentences)")

    def load_pools(self, data_cfg, task, seed):
        sizes = data_cfg["sizes"]
        n = sizes["train"] + sizes["val"] + sizes["test"]
        options = data_cfg.get("generated", {})
        records = generate_sentiment(n, seed=seed, ambiguity=options.get("ambiguity", 0.15),
                                     neutral=options.get("neutral", 0.0), negated=options.get("negated", 0.0))
        cut = sizes["train"] + sizes["val"] * (data_cfg.get("validation_from", "train") == "train")
        return records[:cut], records[cut:]
