"""Problem generation: entry statistics per distribution, structure of M, determinism."""
import pytest
import torch

from inflbench.studies.synthetic.config import DISTRIBUTIONS
from inflbench.studies.synthetic.matrices import cell_seed, make_problem, sample, spectrum_bounds


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_entry_statistics(name):
    family, a, b, _ = DISTRIBUTIONS[name]
    x = sample(name, (400_000,), torch.Generator().manual_seed(0))
    assert x.dtype == torch.float64
    if family == "normal":  # N(mean, std)
        assert abs(x.mean().item() - a) < 0.01 * max(b, 1.0)
        assert abs(x.std().item() - b) < 0.01 * b
    else:  # U(a, b)
        assert x.min().item() >= a and x.max().item() <= b
        assert abs(x.mean().item() - (a + b) / 2) < 0.005
        assert abs(x.var().item() - (b - a) ** 2 / 12) < 0.002


def test_matrix_structure():
    p = make_problem("normal_05_1", 48, 30, 3, 0.01)
    assert p.S.shape == (30, 48) and p.v.shape == (48,) and p.M.shape == (48, 48)
    assert torch.equal(p.M, p.M.T)
    assert torch.allclose(p.M, p.S.T @ p.S / 30 + 0.01 * torch.eye(48, dtype=torch.float64), atol=1e-12)
    lo, hi = spectrum_bounds(p.M)
    assert lo == pytest.approx(0.01, rel=1e-6)  # d > N: the damping is the smallest eigenvalue
    assert hi > 48 * 0.25  # the mean 0.5 adds a rank-one 0.25*11^T component


def test_expected_gram_for_standard_normal():
    p = make_problem("normal_0_1", 16, 20_000, 0, 0.01)
    assert torch.allclose(p.M, 1.01 * torch.eye(16, dtype=torch.float64), atol=0.05)


def test_cells_are_deterministic_and_distinct():
    a = make_problem("uniform_0_1", 20, 10, 0, 0.01)
    b = make_problem("uniform_0_1", 20, 10, 0, 0.01)
    c = make_problem("uniform_0_1", 20, 10, 1, 0.01)
    assert torch.equal(a.M, b.M) and torch.equal(a.v, b.v)
    assert not torch.equal(a.M, c.M)
    seeds = {cell_seed(dist, d, n, s) for dist in DISTRIBUTIONS for d in (512, 1024) for n in (200, 800)
             for s in range(3)}
    assert len(seeds) == len(DISTRIBUTIONS) * 2 * 2 * 3
