"""Fast paths against the existing ones: shared block statistics = recomputed Grams, ``solver: direct`` =
Schulz at convergence, one-test-vector (P) scores = the column mean of the full (Q) score matrix."""

import pytest
import torch

from method_refs import GRADIENT_METHODS, make_grads
from tolerances import assert_close

from inflbench import methods
from inflbench.methods import _common, compute_influence
from inflbench.artifacts import load_block_stats, save_block_stats
from inflbench.methods._stats import block_stats, chunked_apply, chunked_cross, chunked_gram, gram_cross

STATS_METHODS = [m for m in GRADIENT_METHODS if methods.get(m).block_stats]
# (method, params) configurations whose Gram use differs with and without shared statistics
STATS_CASES = [
    ("exact_block", {}),
    ("exact_joint", {}),
    ("exact_joint", {"damping": {"l0.A": 0.1, "l0.B": 0.2, "l1.A": 0.3, "l1.B": 0.1, "head": 0.5}}),
    ("lissa", {"depth": 30}),
    ("lissa", {"depth": 30, "variant": "published"}),
    ("hyperinf_fim", {}),
    ("hyperinf_fim", {"solver": "direct"}),
    ("rrinf", {"sampling": "layer", "iterations": 200}),
    ("rrinf", {"sampling": "full", "iterations": 50}),
]
# linear in the test gradients (cosine normalises by the test norm; tracin_we selects rows per pair)
LINEAR = [m for m in GRADIENT_METHODS if m not in ("cosine", "tracin_we", "tracin_we_top10")]


def test_stats_methods_are_the_curvature_methods():
    assert set(STATS_METHODS) == {"exact_block", "exact_joint", "lissa", "hyperinf_fim", "rrinf"}


@pytest.mark.filterwarnings("ignore:lissa")
@pytest.mark.parametrize("method,params", STATS_CASES)
@pytest.mark.parametrize("m", [4, 1])
def test_shared_block_stats_equal_recomputed(method, params, m):
    tr, te = make_grads(n=9, m=m)  # 12-element blocks use the n x n side, the 3-element head the d x d side
    st = block_stats(tr)
    assert {st.side(k) for k in tr} == {"n", "d"}
    before = {k: st.gram(k).clone() for k in tr}
    a = compute_influence(method, tr, te, **params)
    b = compute_influence(method, tr, te, block_stats=st, **params)
    assert set(a) == set(b)
    for k in a:
        assert_close(b[k], a[k], "float64_reference", f"{method} {params} block {k}")
    # methods may read the shared Grams without a copy, never write them
    assert all(torch.equal(st.gram(k), before[k]) for k in tr), f"{method} altered the shared statistics"
    # the statistics are really used: altered Grams change the scores
    poisoned = block_stats(tr)
    get = poisoned.get
    poisoned.get = lambda k: get(k) * 1.5
    c = compute_influence(method, tr, te, block_stats=poisoned, **params).total()
    assert (c - a.total()).abs().max() > 1e-6 * a.total().abs().max()


def test_shared_block_stats_float32_gradients(tmp_path):
    tr, te = make_grads(n=9, m=4, dtype=torch.float32)
    path = tmp_path / "stats.safetensors"
    save_block_stats(path, block_stats(tr))
    st = load_block_stats(path)
    for k in tr:  # float64 Grams accumulated from float32 chunks
        x = tr[k].reshape(9, -1).double()
        ref = x @ x.T if st.side(k) == "n" else x.T @ x
        assert st.gram(k).dtype == torch.float64
        assert_close(st.gram(k), ref, "float64_reference", k)
    for method in ("exact_block", "exact_joint", "lissa", "hyperinf_fim"):
        a = compute_influence(method, tr, te).total()
        b = compute_influence(method, tr, te, block_stats=st).total()
        assert_close(b, a, "float32_reference", method)


def test_block_stats_file_round_trip_and_stage(tmp_path):
    from inflbench.artifacts import save_gradients
    from inflbench.stages import stage_block_stats, stage_scores

    tr, te = make_grads(n=9, m=4)
    save_gradients(tmp_path / "train.safetensors", tr, list(range(9)), {"split": "train"})
    save_gradients(tmp_path / "val.safetensors", te, list(range(100, 104)), {"split": "val"})
    stage_block_stats({"train": str(tmp_path / "train.safetensors")}, {"stats": str(tmp_path / "stats.safetensors")}, {})
    mem, disk = block_stats(tr), load_block_stats(tmp_path / "stats.safetensors")
    assert disk.n == 9 and disk.shapes == mem.shapes
    for k in tr:
        assert torch.equal(disk.gram(k), mem.gram(k)) and torch.equal(disk.train_sq[k], mem.train_sq[k])
    from safetensors.torch import load_file

    grads = {"train": str(tmp_path / "train.safetensors"), "target": str(tmp_path / "val.safetensors")}
    params = {"method": "exact_block", "method_params": {}}
    stage_scores({**grads, "stats": []}, {"scores": str(tmp_path / "a.safetensors")}, params)
    stage_scores({**grads, "stats": str(tmp_path / "stats.safetensors")}, {"scores": str(tmp_path / "b.safetensors")}, params)
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    for k in a:
        assert_close(b[k], a[k], "float64_reference", k)


def test_block_stats_of_other_gradients_are_refused():
    tr, te = make_grads(n=9, m=4)
    other, _ = make_grads(n=8, m=4)
    with pytest.raises(ValueError, match="block statistics do not match"):
        compute_influence("exact_block", tr, te, block_stats=block_stats(other))


def test_chunked_products_equal_whole_float64_products():
    g = torch.Generator().manual_seed(0)
    X, T = torch.randn(30, 70, generator=g), torch.randn(5, 70, generator=g)
    Xd, Td = X.double(), T.double()
    tiny = 30 * 8 * 3  # three columns (or rows) per chunk
    assert_close(chunked_gram(X, "n", chunk_bytes=tiny), Xd @ Xd.T, "float64_reference")
    assert_close(chunked_gram(X, "d", chunk_bytes=tiny), Xd.T @ Xd, "float64_reference")
    assert_close(chunked_cross(X, T, chunk_bytes=tiny), Xd @ Td.T, "float64_reference")
    K, C = gram_cross(X, T, chunk_bytes=tiny)  # one cast per chunk for both
    assert_close(K, Xd @ Xd.T, "float64_reference")
    assert_close(C, Xd @ Td.T, "float64_reference")
    assert gram_cross(X, None, chunk_bytes=tiny)[1] is None
    W = torch.randn(70, 5, generator=g, dtype=torch.float64)
    assert_close(chunked_apply(X, W, chunk_bytes=tiny), Xd @ W, "float64_reference")


@pytest.mark.parametrize("n", [30, 300])  # one tile; 4 row tiles
def test_lower_gram_cross_equals_whole_products_on_and_below_the_diagonal(n):
    """``lower``: the Gram's lower triangle; ``into``: alpha times both products added to given matrices
    (NaN above the diagonal: never read into the lower triangle). Several chunks each."""
    g = torch.Generator().manual_seed(1)
    X, T = torch.randn(n, 70, generator=g), torch.randn(5, 70, generator=g)
    Xd, Td = X.double(), T.double()
    tiny = n * 8 * 3
    K, C = gram_cross(X, T, chunk_bytes=tiny, lower=True)
    assert_close(K.tril(), (Xd @ Xd.T).tril(), "float64_reference")
    assert_close(C, Xd @ Td.T, "float64_reference")
    K0 = torch.full((n, n), 0.5, dtype=torch.float64)
    K0[torch.ones(n, n, dtype=torch.bool).triu(1)] = float("nan")  # NaN above the diagonal
    C0 = torch.randn(n, 5, generator=g, dtype=torch.float64)
    K1, C1 = gram_cross(X, T, chunk_bytes=tiny, into=(K0.clone(), C0.clone()), alpha=0.25)
    assert_close(K1.tril(), (0.5 + 0.25 * Xd @ Xd.T).tril(), "float64_reference")
    assert_close(C1, C0 + 0.25 * Xd @ Td.T, "float64_reference")


@pytest.mark.parametrize("method", ["exact_block", "exact_joint"])
def test_exact_methods_with_tiled_lower_grams_match_the_reference(method):
    """n = 260 on blocks of 300: the Woodbury side with the Gram's lower row tiles, from float32 (one cast per
    chunk), float64 (no cast) and the shared statistics, against the explicit per-pair solves."""
    from method_refs import ref_exact_block, ref_exact_joint

    g = torch.Generator().manual_seed(2)
    tr = {"a": torch.randn(260, 20, 15, generator=g), "b": torch.randn(260, 300, generator=g)}
    te = {k: torch.randn(3, *v.shape[1:], generator=g) for k, v in tr.items()}
    lam = 0.7
    ref = ref_exact_block(tr, te, {k: lam for k in tr}) if method == "exact_block" else {"total": ref_exact_joint(tr, te, lam)}
    tr64 = {k: v.double() for k, v in tr.items()}
    for label, res in (("float32", compute_influence(method, tr, te, damping=lam)),
                       ("float64", compute_influence(method, tr64, te, damping=lam)),
                       ("stats", compute_influence(method, tr, te, damping=lam, block_stats=block_stats(tr)))):
        for k in ref:
            assert_close(res[k], ref[k], "float64_reference", f"{method} {label} {k}")


@pytest.mark.parametrize("method", ["exact_block", "exact_joint"])
@pytest.mark.parametrize("m", [4, 1])
def test_exact_methods_on_float32_gradients_equal_their_float64_copies(monkeypatch, method, m):
    """float32 gradients: the Gram and the cross product from one float64 cast per chunk (several chunks here)
    = the same gradients given in float64 (no cast) = the shared statistics' route."""
    from inflbench.methods import _stats

    tr, te = make_grads(n=9, m=m, dtype=torch.float32)
    monkeypatch.setattr(_stats, "CHUNK_BYTES", 9 * 8 * 5)  # five columns per chunk
    lam = {"damping": 0.3}  # the default rule reads the norms in the inputs' precision
    fast = compute_influence(method, tr, te, **lam)
    upcast = compute_influence(method, {k: v.double() for k, v in tr.items()}, {k: v.double() for k, v in te.items()}, **lam)
    shared = compute_influence(method, tr, te, block_stats=block_stats(tr), **lam)
    for k in upcast:
        assert_close(fast[k], upcast[k], "float64_reference", f"{method} {k}")
        assert_close(shared[k], upcast[k], "float64_reference", f"{method} {k}")


@pytest.mark.parametrize("method", ["exact_block", "exact_joint"])
def test_float32_gram_option_close_to_float64(method):
    tr, te = make_grads(n=9, m=4, dtype=torch.float32)
    a = compute_influence(method, tr, te).total()
    b = compute_influence(method, tr, te, gram_dtype="float32").total()
    assert_close(b, a, "float32_reference", method)
    assert not torch.equal(a, b)  # really a different computation


@pytest.mark.parametrize("method", ["hyperinf", "hyperinf_fim"])
@pytest.mark.parametrize("variant", ["correct", "published"])
def test_direct_solver_equals_schulz_at_convergence(method, variant):
    tr, te = make_grads(n=9, m=4, scale=0.5)
    schulz = compute_influence(method, tr, te, variant=variant, x0="safe", iterations=100, tol=1e-12)
    direct = compute_influence(method, tr, te, variant=variant, solver="direct")
    assert schulz.meta["diverged"] is False and direct.meta["diverged"] is False
    for k in schulz:
        assert_close(direct[k], schulz[k], "schulz_exact", f"{method} {variant} {k}")


def test_hyperinf_fim_direct_is_exact_block():
    tr, te = make_grads(n=9, m=4)
    a = compute_influence("hyperinf_fim", tr, te, solver="direct")
    b = compute_influence("exact_block", tr, te)
    for k in b:
        assert torch.equal(a[k], b[k])


P_CASES = [(m, {}) for m in LINEAR] + [
    ("lissa", {"variant": "published"}),
    ("lissa", {"scale": 50.0}),
    ("hyperinf", {"solver": "direct"}),
    ("rrinf", {"sampling": "full", "iterations": 20}),
    ("rrinf", {"sampling": "neuron", "iterations": 200}),
]


@pytest.mark.filterwarnings("ignore:lissa")
@pytest.mark.parametrize("stats", [False, True])
@pytest.mark.parametrize("method,params", P_CASES)
def test_one_test_vector_equals_column_mean(method, params, stats):
    tr, te = make_grads(n=9, m=6)
    kw = {"block_stats": block_stats(tr)} if stats else {}
    q = compute_influence(method, tr, te, **params, **kw).total()
    p = compute_influence(method, tr, {k: v.mean(0, keepdim=True) for k, v in te.items()}, **params, **kw).total()
    assert p.shape == (9, 1)
    assert_close(p[:, 0], q.mean(1), "float64_reference", f"{method} {params}")


def test_lissa_one_vector_routes():
    from inflbench.methods.lissa import lissa_route

    n, d, depth = 900, 4096, 10
    assert lissa_route(n, d, 1, depth, gram_needed=False) == "matfree"  # published: no Gram it never uses
    assert lissa_route(n, d, 1, depth, gram_needed=True) != "matfree"
    assert lissa_route(n, d, 1, depth, gram_needed=True, have="n") == "nspace"  # known Gram: no formation cost
    assert lissa_route(n, d, 100, depth, gram_needed=True, have="n") == "nspace"


def test_tracin_reads_no_train_norms(monkeypatch):
    tr, te = make_grads(n=9, m=4)
    seen = []
    real = _common.sq_norms
    monkeypatch.setattr(_common, "sq_norms", lambda x: seen.append(x.shape[0]) or real(x))
    compute_influence("tracin", tr, te)
    assert seen and set(seen) == {4}  # test norms (finiteness check) only
    seen.clear()
    compute_influence("cosine", tr, te)
    assert 9 in seen
    bad = dict(tr)
    bad["l1.B"] = bad["l1.B"].clone()
    bad["l1.B"][3, 0, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite values .* train gradients of block 'l1.B'"):
        compute_influence("tracin", bad, te)


@pytest.mark.parametrize("method", ["tracin", "cosine", "datainf"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize("m", [1, 3])
def test_block_parallel_reads_equal_the_batched_products(monkeypatch, method, dtype, m):
    """Few test rows: blocks split over the threads, each product single-threaded = one bmm per group."""
    tr, te = make_grads(n=9, m=m, dtype=dtype)
    threads, split, real = torch.get_num_threads(), [], _common.on_threads
    monkeypatch.setattr(_common, "on_threads", lambda fn, parts: split.append(len(parts)) or real(fn, parts))
    torch.set_num_threads(2)
    try:
        fast = compute_influence(method, tr, te)
        assert split == ([2] if m == 1 else []) and torch.get_num_threads() == 2  # shares; the setting restored
        monkeypatch.setattr(_common, "THIN_TEST_ROWS", 0)
        ref = compute_influence(method, tr, te)
    finally:
        torch.set_num_threads(threads)
    assert set(fast) == set(ref)
    for k in ref:
        scale = float(ref[k].abs().max())
        torch.testing.assert_close(fast[k], ref[k], rtol=1e-5 if dtype == torch.bfloat16 else 1e-12,
                                   atol=1e-7 * scale if dtype == torch.bfloat16 else 1e-14 * scale, msg=k)


def test_block_parallel_reads_only_for_gradients_in_host_memory():
    from inflbench.methods._common import GradData, cross_products

    tr = {k: torch.empty(9, 4, 3, device="meta") for k in "ab"}  # no GPU here: "meta" is the non-CPU device
    te = {k: torch.empty(1, 4, 3, device="meta") for k in "ab"}
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = list(cross_products(GradData(tr, te)))
    finally:
        torch.set_num_threads(threads)
    assert [names for names, _ in got] == [["a", "b"]] and got[0][1].shape == (2, 9, 1)  # one batched bmm


def test_column_shares_equal_the_plain_products():
    """read_twice with one share of the columns per worker = the products on all threads."""
    from inflbench.solvers.common import ThreadShares, read_twice

    g = torch.Generator().manual_seed(0)
    X, A, Y = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((7, 11), (7, 1), (1, 11)))
    seen = []

    def fn(P, cols):  # column-wise: a residual scaled per column
        seen.append(cols)
        return (P - Y[:, cols]) * torch.arange(11, dtype=torch.float64)[cols]

    plain = X @ ((A.T @ X - Y) * torch.arange(11, dtype=torch.float64)).T
    for workers in (2, 3):
        with ThreadShares(workers) as shares:
            seen.clear()
            torch.testing.assert_close(read_twice(X, A, fn, shares), plain, rtol=1e-13, atol=1e-13)
            assert sorted((c.start, c.stop) for c in seen) == [(round(i * 11 / workers), round((i + 1) * 11 / workers))
                                                               for i in range(workers)]
    seen.clear()
    torch.testing.assert_close(read_twice(X, A, fn), plain, rtol=1e-13, atol=1e-13)
    assert seen == [slice(None)]  # no shares: one product over all columns
    meta = torch.empty(7, 11, device="meta")
    with ThreadShares(2) as shares:
        assert read_twice(meta, torch.empty(7, 1, device="meta"), lambda P, cols: P, shares).shape == (7, 1)
        assert shares._pool is None  # a non-CPU block never reaches the threads


@pytest.mark.parametrize("params", [{"sampling": "layer", "iterations": 300}, {"sampling": "full", "iterations": 40},
                                    {"sampling": "layer", "iterations": 300, "variant": "published"}])
@pytest.mark.parametrize("cache", [True, False])
def test_rrinf_row_steps_on_column_shares_equal_one_product(monkeypatch, params, cache):
    """One test vector: RRInf's steps from the rows (no Gram cache) and its residual check read a share of each
    block per thread; the scores and the convergence check equal the single-product route."""
    from inflbench.methods import rrinf as rrinf_module
    from inflbench.solvers import common

    if not cache:
        monkeypatch.setattr(rrinf_module, "GRAM_CACHE_BYTES", 0)
    tr, te = make_grads(n=9, m=1, dtype=torch.float64)
    threads, maps, real = torch.get_num_threads(), [], common.ThreadShares.map
    monkeypatch.setattr(common.ThreadShares, "map", lambda self, fn, parts: maps.append(len(parts)) or real(self, fn, parts))
    monkeypatch.setattr(common, "_SMALL_OP_BYTES", 0)  # tiny blocks: keep the threads the loop would drop
    torch.set_num_threads(2)
    try:
        fast = compute_influence("rrinf", tr, te, **params)
        row_steps = not cache and params["sampling"] == "layer"  # full mode sums its Grams whatever the cache
        published = params.get("variant") == "published"  # its residual check reads every block
        assert len(maps) >= (params["iterations"] if row_steps else 1 if published else 0) and set(maps) <= {2}
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(common, "THIN_ROWS", 0)
        maps.clear()
        ref = compute_influence("rrinf", tr, te, **params)
        assert maps == []
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(fast["total"], ref["total"], rtol=1e-10, atol=1e-12 * float(ref["total"].abs().max()))
    for key in ("converged", "ridge_residual_max", "reweighted_ridge_residual_max"):
        if key in ref.meta:
            assert fast.meta[key] == pytest.approx(ref.meta[key], rel=1e-9), key


def test_split_evenly_keeps_order_and_balances():
    items = list("abcdefgh")
    parts = _common.split_evenly(items, [1, 1, 1, 1, 1, 1, 1, 1], 3)
    assert sum(parts, []) == items and len(parts) == 3 and max(map(len, parts)) - min(map(len, parts)) <= 1
    assert _common.split_evenly(items, [8, 1, 1, 1, 1, 1, 1, 1], 2) == [["a"], list("bcdefgh")]
    assert _common.split_evenly(["a"], [5], 4) == [["a"]]
    assert _common.on_threads(lambda p: sum(p), [[1, 2], [3]]) == [3, 3]


def test_finiteness_checks_over_all_blocks_at_once():
    """The input and score checks run one reduction over all blocks; the per-block path still names the block,
    and finite scores whose sums overflow are not taken for non-finite ones."""
    tr, te = make_grads(n=9, m=4)
    last = list(te)[-1]
    bad = dict(te)
    bad[last] = bad[last].clone()
    bad[last][2].view(-1)[0] = float("inf")
    with pytest.raises(ValueError, match=f"non-finite values .* test gradients of block '{last}'"):
        compute_influence("tracin", tr, bad)
    big = {k: torch.full((2, 1), 1e154, dtype=torch.float64) for k in ("a", "b")}
    res = compute_influence("tracin", big, {k: -v[:1] for k, v in big.items()})  # every score 1e308
    assert all(bool(torch.isfinite(v).all()) for v in res.values())
    assert all(float(v.sum()) == float("inf") for v in res.values())  # the block sums overflow
    with pytest.raises(ValueError, match="float32 cannot hold .* block 'a'"):
        compute_influence("tracin", big, {k: -v[:1] for k, v in big.items()}, dtype="float32")


@pytest.mark.parametrize("s", [7, 300, 700])
def test_cholesky_solve_equals_lu(s):
    from inflbench.solvers import direct as _exact

    g = torch.Generator().manual_seed(s)
    X = torch.randn(2, s, s + 5, generator=g, dtype=torch.float64)
    M = X @ X.mT + 0.1 * torch.eye(s, dtype=torch.float64)
    L, ok = _exact.cholesky(M)
    assert ok and torch.equal(L.triu(1), torch.zeros_like(L))
    assert_close(L, torch.linalg.cholesky(M), "float64_reference")
    for k in (1, 40):
        R = torch.randn(2, s, k, generator=g, dtype=torch.float64)
        ref = torch.stack([torch.linalg.solve(M[i], R[i]) for i in range(2)])
        assert_close(_exact.cholesky_solve(M, R), ref, "float64_reference")
    bad = M.clone()
    bad[0, -1, -1] = -1.0  # not positive definite: falls back to LU
    R = torch.randn(2, s, 1, generator=g, dtype=torch.float64)
    ref = torch.stack([torch.linalg.solve(bad[i], R[i]) for i in range(2)])
    assert_close(_exact.cholesky_solve(bad, R), ref, "float64_reference")


def test_rrinf_row_norms_of_drawn_rows_equal_the_full_pass():
    from inflbench.solvers.rrinf import RowSource

    tr, te = make_grads(n=9, m=3, dtype=torch.float32)
    blocks, targets = list(tr.values()), list(te.values())
    idx = torch.tensor([0, 5, 13, 40, 41, 7, 30])
    lazy = RowSource(blocks, targets, torch.float32).gather(idx)  # norms of the drawn rows only
    full_src = RowSource(blocks, targets, torch.float32)
    assert len(full_src.row_sq) == len(blocks)  # full pass first
    full = full_src.gather(idx)
    for a, b in zip(lazy, full):
        assert_close(a, b, "float32_reference")
    assert not torch.equal(lazy[2], torch.zeros_like(lazy[2]))


@pytest.mark.parametrize("variant", ["correct", "published"])
def test_hyperinf_large_gfims_solved_alone_equal_stacked(monkeypatch, variant):
    """GFIMs of at least ALONE_BYTES are solved one at a time (no stacked copy of equal-shape blocks); the
    scores equal those of the stacked batch."""
    from inflbench.methods import _schulz, hyperinf as hyperinf_mod

    assert _schulz.schulz_step(1024, torch.float32) == 1 and _schulz.schulz_step(512, torch.float64) == 1
    assert _schulz.schulz_step(64, torch.float32) == _schulz.BATCH_BYTES // (4 * 64 * 64 * 4)
    gen = torch.Generator().manual_seed(3)
    shapes = {f"l{i}.{ab}": (4, 512) if ab == "A" else (512, 4) for i in range(3) for ab in "AB"}
    tr = {k: torch.randn(40, *s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}
    te = {k: torch.randn(5, *s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}
    alone = compute_influence("hyperinf", tr, te, variant=variant)
    monkeypatch.setattr(hyperinf_mod, "schulz_step", lambda side, dtype: 6)  # all six blocks stacked
    stacked = compute_influence("hyperinf", tr, te, variant=variant)
    for k in shapes:
        assert_close(alone[k], stacked[k], "schulz_exact", f"{variant} {k}")


@pytest.mark.filterwarnings("ignore:lissa")
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_given_norms_equal_computed(method):
    tr, te = make_grads(n=9, m=4)
    kw = {"iterations": 100} if method == "rrinf" else {}
    ref = compute_influence(method, tr, te, **kw)
    got = compute_influence(method, tr, te, train_sq={k: _common.sq_norms(v) for k, v in tr.items()},
                            test_sq={k: _common.sq_norms(v) for k, v in te.items()}, **kw)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0, msg=f"{method} {k}")


def test_given_norms_are_used_and_checked(monkeypatch):
    tr, te = make_grads(n=9, m=4)
    train_sq = {k: _common.sq_norms(v) for k, v in tr.items()}
    test_sq = {k: _common.sq_norms(v) for k, v in te.items()}
    seen = []
    real = _common.sq_norms
    monkeypatch.setattr(_common, "sq_norms", lambda x: seen.append(x.shape[0]) or real(x))
    base = compute_influence("cosine", tr, te, train_sq=train_sq, test_sq=test_sq)
    assert seen == []  # no pass over the gradients for norms
    doubled = compute_influence("cosine", tr, te, train_sq={k: 4 * v for k, v in train_sq.items()}, test_sq=test_sq)
    torch.testing.assert_close(doubled.total(), base.total() / 2)  # the given norms are what it divides by
    with pytest.raises(ValueError, match=r"^train_sq\['l0.A'\]: shape \(8,\), expected \(9,\)"):
        compute_influence("cosine", tr, te, train_sq={"l0.A": train_sq["l0.A"][:8]})
    with pytest.raises(ValueError, match="^test_sq: norms of 'nope', which is not a test block"):
        compute_influence("cosine", tr, te, test_sq={"nope": test_sq["l0.A"]})


@pytest.mark.parametrize("sampling,iterations", [("layer", 300), ("full", 60)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rrinf_residual_from_the_solver_grams_equals_the_pass_over_the_store(sampling, iterations, dtype):
    from inflbench.methods._health import ridge_residual
    from inflbench.solvers import rrinf_sgd

    tr, te = make_grads(n=9, m=4, dtype=dtype)
    names = list(tr)
    lam = 0.05
    stats: dict = {}
    omega = rrinf_sgd([tr[k] for k in names], [te[k] for k in names], damping=lam, iterations=iterations, lr=0.5,
                      sampling=sampling, dtype=dtype, target_scale=-9.0, stats=stats)
    terms = stats["gram_terms"]
    assert terms["blocks"] or terms["all"] is not None  # the solver formed Grams and shares them
    via_terms = ridge_residual([tr[k] for k in names], [te[k] for k in names], omega, lam, terms)
    via_store = ridge_residual([tr[k] for k in names], [te[k] for k in names], omega, lam)
    exact = ridge_residual([tr[k].double() for k in names], [te[k].double() for k in names], omega.double(), lam)
    assert 0 < via_store < 1
    assert via_terms == pytest.approx(via_store, rel=1e-9 if dtype == torch.float64 else 1e-4)
    assert via_store == pytest.approx(exact, rel=1e-9 if dtype == torch.float64 else 1e-4)
