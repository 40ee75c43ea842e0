"""Gradient generators and slow explicit references shared by the method tests."""

from __future__ import annotations

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tests/ (tolerances.py)

from inflbench import methods  # noqa: E402
from synthetic_grads import synthetic_grads  # noqa: E402

SHAPES = {"l0.A": (2, 6), "l0.B": (6, 2), "l1.A": (2, 6), "l1.B": (6, 2), "head": (3,)}

GRADIENT_METHODS = methods.available(include_model_methods=False)


def make_grads(n=9, m=4, shapes=SHAPES, seed=0, dtype=torch.float64, scale=1.0):
    tr, te, _, _ = synthetic_grads(shapes, n, m, seed=seed, scale=scale, dtype=dtype, latent=6)
    return tr, te


# ----------------------------------------------------------------- explicit references (loops)


def default_lambda(train, names=None):
    names = list(names or train)
    n = train[names[0]].shape[0]
    tot = sum(float((train[k][i].double() ** 2).sum()) for k in names for i in range(n))
    d = sum(train[k][0].numel() for k in names)
    return 0.1 * tot / n / d


def fisher(rows):
    """(1/n) sum_i g_i g_i^T by an explicit loop over samples."""
    n, d = rows.shape
    G = torch.zeros(d, d, dtype=torch.float64)
    for i in range(n):
        G += torch.outer(rows[i], rows[i])
    return G / n


def ref_exact(train_rows, test_rows, lam):
    """score[i, j] = -g_test_j^T (G + lam I)^{-1} g_i, one solve per pair."""
    tr, te = train_rows.double(), test_rows.double()
    M = fisher(tr) + lam * torch.eye(tr.shape[1], dtype=torch.float64)
    S = torch.empty(tr.shape[0], te.shape[0], dtype=torch.float64)
    for i in range(tr.shape[0]):
        x = torch.linalg.solve(M, tr[i])
        for j in range(te.shape[0]):
            S[i, j] = -(te[j] @ x)
    return S


def ref_exact_block(train, test, lams=None):
    out = {}
    for k in train:
        lam = lams[k] if lams else default_lambda(train, [k])
        out[k] = ref_exact(train[k].reshape(train[k].shape[0], -1), test[k].reshape(test[k].shape[0], -1), lam)
    return out


def concat(d):
    n = next(iter(d.values())).shape[0]
    return torch.cat([v.reshape(n, -1).double() for v in d.values()], 1)


def ref_exact_joint(train, test, lam=None):
    lam = default_lambda(train) if lam is None else lam
    return ref_exact(concat(train), concat(test), lam)


def ref_datainf_block(tr, te, lam):
    tr, te = tr.double(), te.double()
    n, d = tr.shape
    H = torch.zeros(d, d, dtype=torch.float64)
    for k in range(n):
        g = tr[k]
        H += (torch.eye(d, dtype=torch.float64) - torch.outer(g, g) / (lam + g @ g)) / lam
    H /= n
    S = torch.empty(n, te.shape[0], dtype=torch.float64)
    for i in range(n):
        for j in range(te.shape[0]):
            S[i, j] = -(te[j] @ H @ tr[i])
    return S
