import pytest
import torch
from torch import nn

from inflbench.artifacts import load_gradients, save_gradients
from inflbench.gradients import (block_name, input_embedding, per_sample_gradients, per_sample_gradients_loop,
                                 present_tokens, trainable_blocks)
from inflbench.models import iterate_batches

TOL = 1e-5


def _max_rel_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-12)) for k in a)


def test_minilm_batched_equals_loop(minilm):
    family, model, encoded = minilm
    train = encoded["train"]
    batched = per_sample_gradients(model, iterate_batches(train, 10), family.per_sample_loss)
    loop = per_sample_gradients_loop(model, iterate_batches(train, 1), family.per_sample_loss)
    n = len(train["labels"])
    assert len(batched) == 6 * 2 * 2 + 1  # 6 layers x (query, value) x (A, B) + classifier head
    assert all(g.shape[0] == n for g in batched.values())
    assert batched["classifier"].shape == (n, 2, 385)  # head weight with its bias as the last column
    assert batched["bert.encoder.layer.0.attention.self.query.lora_A"].shape == (n, 4, 384)
    assert all(float(g.abs().max()) > 0 for g in loop.values())  # no block is trivially zero
    assert _max_rel_diff(batched, loop) < TOL
    # the sum over samples is the ordinary gradient of the summed loss
    model.zero_grad()
    family.per_sample_loss(model, train).sum().backward()
    head = dict(model.named_parameters())
    w = [p for k, p in head.items() if "classifier" in k and p.requires_grad and k.endswith("weight")][0]
    torch.testing.assert_close(batched["classifier"].sum(0)[:, :-1], w.grad, rtol=1e-4, atol=1e-6)
    model.zero_grad(set_to_none=True)


def test_minilm_word_embedding_block_batched_equals_loop(minilm):
    """WE block (compressed to the tokens present): hooks on padded batches == autograd on the full weight."""
    family, model, encoded = minilm
    train = encoded["train"]
    tokens = present_tokens(encoded.values())
    batched = per_sample_gradients(model, iterate_batches(train, 10), family.per_sample_loss, word_embeddings=tokens)
    loop = per_sample_gradients_loop(model, iterate_batches(train, 1), family.per_sample_loss, word_embeddings=tokens)
    we = "bert.embeddings.word_embeddings"
    n = len(train["labels"])
    assert input_embedding(model)[0] == we and not model.get_input_embeddings().weight.requires_grad
    assert len(batched) == 6 * 2 * 2 + 2 and batched[we].shape == (n, len(tokens), 384)
    assert 0 not in tokens.tolist() and 101 in tokens.tolist()  # [PAD] only pads; [CLS] in every sample
    assert _max_rel_diff(batched, loop) < TOL
    # a row is non-zero exactly when its token occurs in the sample
    present = torch.stack([torch.isin(tokens, train["input_ids"][b][train["attention_mask"][b].bool()])
                           for b in range(n)])
    assert torch.equal(batched[we].abs().amax(-1) > 0, present)
    # without the option the block is absent
    assert we not in per_sample_gradients(model, iterate_batches(train, 10), family.per_sample_loss)


def test_word_embedding_rows_sum_token_positions():
    """Hand-made case: a frozen embedding used at repeated positions, gradient wrt its output known in closed form."""
    torch.manual_seed(2)
    emb = nn.Embedding(10, 3).double().requires_grad_(False)
    head = nn.Linear(3, 1, bias=False).double()
    model = nn.Module()
    model.emb, model.head = emb, head
    model.get_input_embeddings = lambda: emb
    ids = torch.tensor([[4, 7, 4], [2, 2, 9]])
    loss = lambda m, b: m.head(m.emb(b["input_ids"])).sum((1, 2))  # noqa: E731 - d loss / d emb-output = w
    g = per_sample_gradients(model, [{"input_ids": ids}], loss, dtype=torch.float64,
                             word_embeddings=torch.tensor([2, 4, 7]))["emb"]
    w = head.weight[0].detach()
    expected = torch.stack([torch.stack([0 * w, 2 * w, w]), torch.stack([2 * w, 0 * w, 0 * w])])
    torch.testing.assert_close(g, expected)  # id 9 is not kept: dropped


def test_trainable_word_embedding_is_rejected():
    model = nn.Module()
    model.emb = nn.Embedding(4, 2)
    model.head = nn.Linear(2, 1)
    model.get_input_embeddings = lambda: model.emb
    with pytest.raises(ValueError, match="word embedding is trainable"):
        input_embedding(model)


class TokenModel(nn.Module):
    """Sequence model with a shared Linear used twice, a frozen layer and a per-token head."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(5, 6)
        self.frozen = nn.Linear(6, 6)
        self.frozen.requires_grad_(False)
        self.out = nn.Linear(6, 3, bias=False)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        h = torch.tanh(self.frozen(h)) + self.inp(x)[..., :6]  # second use of `inp`
        return self.out(h)


def _token_loss(model, batch):
    logits = model(batch["x"])
    return nn.functional.cross_entropy(logits.transpose(1, 2), batch["y"], reduction="none").mean(1)


@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_token_model_batched_equals_loop(batch_size):
    torch.manual_seed(0)
    model = TokenModel().double()
    data = {"x": torch.randn(11, 9, 5, dtype=torch.float64), "y": torch.randint(0, 3, (11, 9))}
    batched = per_sample_gradients(model, iterate_batches(data, batch_size), _token_loss, dtype=torch.float64)
    loop = per_sample_gradients_loop(model, iterate_batches(data, 1), _token_loss)
    assert set(batched) == {"inp", "out"}
    assert batched["inp"].shape == (11, 6, 6)
    assert _max_rel_diff(batched, loop) < 1e-10


def test_rows_per_sample_sums_rows():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 2)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    loss = lambda m, b: (m(b["x"]) ** 2).sum(-1)  # noqa: E731
    per_row = per_sample_gradients(model, [{"x": x}], loss, dtype=torch.float64)["0"]
    grouped = per_sample_gradients(model, [{"x": x}], loss, rows_per_sample=2, dtype=torch.float64)["0"]
    torch.testing.assert_close(grouped, per_row.reshape(2, 2, 2, 4).sum(1))


def test_non_linear_trainable_parameter_is_rejected():
    model = nn.Sequential(nn.Embedding(5, 3), nn.Linear(3, 2))
    with pytest.raises(ValueError, match="0.weight is not a Linear layer"):
        trainable_blocks(model)


def test_block_names_strip_peft_prefixes():
    assert block_name("base_model.model.bert.encoder.layer.3.attention.self.value.lora_B.default") == \
        "bert.encoder.layer.3.attention.self.value.lora_B"
    assert block_name("base_model.model.classifier.modules_to_save.default") == "classifier"
    assert block_name("base_model.model.classifier.modules_to_save.default.out_proj") == "classifier.out_proj"


def test_store_roundtrip(tmp_path):
    grads = {"a": torch.randn(3, 2, 4), "b": torch.randn(3, 5, 1)}
    path = tmp_path / "g" / "train.safetensors"
    save_gradients(path, grads, [7, 8, 9], {"fingerprint": "abc", "split": "train"})
    back = load_gradients(path)
    assert all(torch.equal(back[k], grads[k]) for k in grads)
    assert set(load_gradients(path, ["b"])) == {"b"}
    import json

    index = json.loads(path.with_suffix(".json").read_text())
    assert index["blocks"]["a"] == {"shape": [2, 4], "dtype": "float32"}
    assert index["sample_ids"] == [7, 8, 9] and index["fingerprint"] == "abc"


def test_micro_batches_from_the_activation_budget(minilm, tmp_path):
    """A batch computed as micro-batches sized from the activation budget gives the same store (same rows,
    same padding), streamed or in memory."""
    from inflbench.gradients import micro_batch_size, stream_gradients
    from inflbench.resources import activation_bytes_per_sample

    family, model, encoded = minilm
    train = encoded["train"]
    batch = next(iterate_batches(train, 10))
    tokens = batch["input_ids"].shape[-1]
    per = activation_bytes_per_sample(model.config, tokens)  # MiniLM: 6 layers of width 384, FFN 1536, 12 heads
    assert per == 4 * 6 * tokens * (10 * 384 + 3 * 1536 + 3 * 12 * tokens)
    assert micro_batch_size(model, batch, 3 * per + per // 2) == 3
    assert micro_batch_size(model, batch, 1) == 1 and micro_batch_size(model, batch, None) == 10
    assert micro_batch_size(model, batch, 100 * per) == 10
    assert activation_bytes_per_sample(None, 16) is None
    whole = per_sample_gradients(model, iterate_batches(train, 10), family.per_sample_loss)
    micro = per_sample_gradients(model, iterate_batches(train, 10), family.per_sample_loss,
                                 activation_bytes=3 * per + per // 2)
    ids = list(range(len(train["labels"])))
    stream_gradients(tmp_path / "micro.safetensors", model, iterate_batches(train, 10), family.per_sample_loss, ids,
                     {}, activation_bytes=3 * per + per // 2)
    streamed = load_gradients(tmp_path / "micro.safetensors")
    assert list(streamed) == list(whole)
    assert all(torch.equal(streamed[k], micro[k]) for k in whole)  # streamed == in memory, bit for bit
    assert _max_rel_diff(micro, whole) < TOL
    print("micro vs whole batches, max rel diff:", _max_rel_diff(micro, whole))
