"""Image-text sources for the text-to-image identification tasks (RRInf §4.2, App. A).

* ``digits`` (offline default) -- sklearn's bundled 8x8 handwritten digits; class = digit, the prompt
  carries a class token (``a photo of digit {token}``). The diffusion family upsamples the images.
* ``image_styles`` -- the style task: one image-caption collection per style (hub dataset or local
  folder), prompt ``Generate an image in a specific {custom} style. {text}`` (RRInf App. A); class = style.
* ``dreambooth`` -- the subject task: the DreamBooth dataset (one folder per subject; a local copy, or
  ``hub:<dataset repo>`` downloaded with ``huggingface_hub`` -- its ``hub_subfolder`` holds the subjects);
  a unique random token per subject in the prompt (``a {token} {noun}``, e.g. "a axnkv dog"); class =
  subject. Per subject, ``train_per_subject`` images train, ``val_per_subject`` validate, the rest test.

Records carry ``uid`` (stable id, seeds the diffusion noise draws), ``image`` (a reference resolved by
``load_image``: ``digits:<row>``, ``hub:<dataset>:<split>:<row>`` or a file path), ``prompt`` and
``class_name``.
"""

from __future__ import annotations

import functools
import re
import string
from pathlib import Path

import numpy as np

from inflbench.data.base import DataSource, register_source
from inflbench.errors import ConfigError, DataError
from inflbench.schemas import resolve_options
from inflbench.data.balanced import balanced_pools, check_counts, check_template, per_class_quota, \
    select_classes

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def random_tokens(n: int, seed: int, length: int = 5) -> list[str]:
    """``n`` distinct random letter strings (DreamBooth-style identifiers such as ``AXNkV``)."""
    rng = np.random.default_rng([seed, 0x70C])
    letters = np.array(list(string.ascii_letters))
    tokens: list[str] = []
    while len(tokens) < n:
        token = "".join(rng.choice(letters, size=length))
        if token.lower() not in {t.lower() for t in tokens}:
            tokens.append(token)
    return tokens


# --------------------------------------------------------------------------- image references


@functools.lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(int)


@functools.lru_cache(maxsize=8)
def _hub_split(dataset: str, split: str):
    import datasets

    return datasets.load_dataset(dataset, split=split)


def load_image(ref: str, image_column: str = "image"):
    """The image behind a record's ``image`` reference: a (H, W) float array in [0, 1] for digits, else a PIL image."""
    if ref.startswith("digits:"):
        return _digits()[0][int(ref[7:])]
    if ref.startswith("hub:"):
        dataset, split, row = ref[4:].rsplit(":", 2)
        return _hub_split(dataset, split)[int(row)][image_column]
    from PIL import Image

    try:
        return Image.open(ref)
    except FileNotFoundError:
        raise DataError(f"{ref}: image file does not exist") from None


# --------------------------------------------------------------------------- digits


@register_source("digits")
class DigitsSource(DataSource):
    """``data.source: digits``; task name ``digits``."""

    offline = True

    def options(self, data_cfg: dict) -> dict:
        return resolve_options("data", self.name, data_cfg.get("options"))

    def classes(self, opts: dict) -> list[str]:
        return select_classes("data.options.classes", opts["classes"], [str(d) for d in range(10)], str)

    def check(self, data_cfg: dict) -> None:
        for task in data_cfg["tasks"]:
            if task != "digits":
                raise ConfigError("data.tasks", f"source 'digits' provides the task 'digits', not {task!r}")
        opts = self.options(data_cfg)
        classes = self.classes(opts)
        check_template("data.options.prompt_template", opts["prompt_template"], ["token"], ["token"])
        targets = _digits()[1]
        check_counts({c: int((targets == int(c)).sum()) for c in classes},
                     sum(per_class_quota(data_cfg["sizes"], len(classes))), "sklearn load_digits")

    def load_pools(self, data_cfg, task, seed):
        opts = self.options(data_cfg)
        classes = self.classes(opts)
        tokens = DIGIT_WORDS if opts["class_tokens"] == "words" else random_tokens(10, seed)
        targets = _digits()[1]
        by_class = {c: [{"uid": f"digits/{i}", "image": f"digits:{i}", "class_name": c, "label": k,
                         "prompt": opts["prompt_template"].format(token=tokens[int(c)])}
                        for i in np.flatnonzero(targets == int(c))] for k, c in enumerate(classes)}
        return balanced_pools(by_class, data_cfg["sizes"], seed, "sklearn load_digits")


# --------------------------------------------------------------------------- style generation



def _folder_items(folder: Path) -> list[tuple[str, str]]:
    """(image path, caption) of a local folder; the caption is the same-stem .txt file (or empty)."""
    items = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            caption = path.with_suffix(".txt")
            items.append((str(path.resolve()), caption.read_text().strip() if caption.exists() else ""))
    return items


@register_source("image_styles")
class StyleSource(DataSource):
    """``data.source: image_styles``; task name ``style``."""

    def options(self, data_cfg: dict) -> dict:
        return resolve_options("data", self.name, data_cfg.get("options"))

    def check(self, data_cfg: dict) -> None:
        for task in data_cfg["tasks"]:
            if task != "style":
                raise ConfigError("data.tasks", f"source 'image_styles' provides the task 'style', not {task!r}")
        opts = self.options(data_cfg)
        classes = select_classes("data.options.classes", opts["classes"], list(opts["styles"]))
        check_template("data.options.prompt_template", opts["prompt_template"], ["custom"], ["custom", "text"])
        need = sum(per_class_quota(data_cfg["sizes"], len(classes)))
        for style in classes:  # local folders are counted now; hub collections when they are loaded
            where = opts["styles"][style]
            if not str(where).startswith("hub:"):
                if not Path(where).is_dir():
                    raise ConfigError(f"data.options.styles.{style}", f"{where} is not a folder (or hub:<dataset id>)")
                check_counts({style: len(_folder_items(Path(where)))}, need, str(where))

    def load_pools(self, data_cfg, task, seed):
        opts = self.options(data_cfg)
        classes = select_classes("data.options.classes", opts["classes"], list(opts["styles"]))
        by_class = {}
        for k, style in enumerate(classes):
            where = str(opts["styles"][style])
            if where.startswith("hub:"):
                rows = _hub_split(where[4:], opts["split"])
                items = [(f"{where}:{opts['split']}:{i}", str(text or ""))
                         for i, text in enumerate(rows[opts["caption_column"]])]
            else:
                items = _folder_items(Path(where))
            by_class[style] = [{"uid": f"style/{style}/{ref}", "image": ref, "class_name": style, "label": k,
                                "prompt": opts["prompt_template"].format(custom=style, text=text).strip()}
                               for ref, text in items]
        return balanced_pools(by_class, data_cfg["sizes"], seed, "image_styles")


# --------------------------------------------------------------------------- DreamBooth subjects


def default_noun(subject: str) -> str:
    """``dog6`` -> ``dog``, ``grey_sloth_plushie`` -> ``grey sloth plushie``."""
    return re.sub(r"\d+$", "", subject).replace("_", " ").strip()


@register_source("dreambooth")
class DreamBoothSource(DataSource):
    """``data.source: dreambooth``; task name ``subject``."""

    def options(self, data_cfg: dict) -> dict:
        opts = resolve_options("data", self.name, data_cfg.get("options"))
        if not opts["root"] or not (str(opts["root"]).startswith("hub:") or Path(opts["root"]).is_dir()):
            raise ConfigError("data.options.root", "must be the DreamBooth dataset folder (one folder per subject) "
                                                   f"or hub:<dataset repo>; got {opts['root']!r}")
        return opts

    @staticmethod
    def root(opts: dict) -> Path:
        root = str(opts["root"])
        if root.startswith("hub:"):
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id=root[4:], repo_type="dataset")) / opts["hub_subfolder"]
        return Path(root)

    def subjects(self, opts: dict) -> dict[str, list[str]]:
        root = self.root(opts)
        if not root.is_dir():
            raise DataError(f"{root}: DreamBooth subject folder does not exist")
        available = {p.name: [str(f.resolve()) for f in sorted(p.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
                     for p in sorted(root.iterdir()) if p.is_dir()}
        chosen = select_classes("data.options.subjects", opts["subjects"], sorted(available))
        return {s: available[s] for s in chosen}

    def check(self, data_cfg: dict) -> None:
        for task in data_cfg["tasks"]:
            if task != "subject":
                raise ConfigError("data.tasks", f"source 'dreambooth' provides the task 'subject', not {task!r}")
        opts = self.options(data_cfg)
        check_template("data.options.prompt_template", opts["prompt_template"], ["token"], ["token", "noun"])
        if str(opts["root"]).startswith("hub:"):  # subjects and counts are checked once it is downloaded
            return
        subjects = self.subjects(opts)
        unknown = sorted(set(opts["class_nouns"]) - set(subjects))
        if unknown:
            raise ConfigError("data.options.class_nouns", f"unknown subject {unknown[0]!r}")
        per = opts["train_per_subject"] + opts["val_per_subject"]
        check_counts({s: len(files) for s, files in subjects.items()}, per, str(opts["root"]))
        sizes, k = data_cfg["sizes"], len(subjects)
        for split, want in (("train", opts["train_per_subject"] * k), ("val", opts["val_per_subject"] * k)):
            if sizes[split] != want:
                raise ConfigError(f"data.sizes.{split}", f"must be {want} ({k} subjects x {split}_per_subject)")
        rest = sum(len(files) - per for files in subjects.values())
        if sizes["test"] > rest:
            raise ConfigError("data.sizes.test", f"only {rest} images remain for testing; set it to at most {rest}")

    def load_pools(self, data_cfg, task, seed):
        opts = self.options(data_cfg)
        subjects = self.subjects(opts)
        tokens = dict(zip(subjects, random_tokens(len(subjects), seed, opts["token_length"])))
        rng = np.random.default_rng(seed)
        per = opts["train_per_subject"] + opts["val_per_subject"]
        trainval, test = [], []
        for k, (subject, files) in enumerate(subjects.items()):
            noun = opts["class_nouns"].get(subject, default_noun(subject))
            prompt = opts["prompt_template"].format(token=tokens[subject], noun=noun)
            records = [{"uid": f"dreambooth/{subject}/{Path(f).name}", "image": f, "class_name": subject, "label": k,
                        "prompt": prompt} for f in files]
            order = rng.permutation(len(records))
            trainval += [records[i] for i in order[:per]]
            test += [records[i] for i in order[per:]]
        return trainval, test
