"""DPCA against closed forms on linear-Gaussian sources, Lemma 3.1, and the training projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bwgym.codecs.core.dpca import DPCA, PCA, DPCAProjection
from bwgym.codecs.core.entropy import quantize_ste, scale_index

# Two views, each a known linear map of a shared latent plus independent noise:
#   x_k = Q_k diag(sqrt(lam_k)) y_k,  y_k = sqrt(rho) s[:d_k] + sqrt(1 - rho) n_k,  s, n_k ~ N(0, I)
# so Cov_kk = Q_k diag(lam_k) Q_k^T exactly (eigenvalues lam_k, whatever rho) and the cross
# covariance is rho Q_1 D_1 J D_2 Q_2^T, which vanishes at rho = 0.
LAMBDAS = {"arm": np.array([10.0, 6.0, 3.0, 1.5, 0.7, 0.2]), "side": np.array([8.0, 4.0, 2.5, 0.4])}
SHARED = 6


def _rotations(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: np.linalg.qr(rng.standard_normal((len(v), len(v))))[0] for k, v in LAMBDAS.items()}


def _sample(n: int, rho: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rot = _rotations()
    s = rng.standard_normal((n, SHARED))
    out = {}
    for name, lam in LAMBDAS.items():
        d = len(lam)
        y = np.sqrt(rho) * s[:, :d] + np.sqrt(1 - rho) * rng.standard_normal((n, d))
        out[name] = (y * np.sqrt(lam)) @ rot[name].T + np.arange(d)  # non-zero means too
    return out


def _population_cov(rho: float) -> np.ndarray:
    rot = _rotations()
    maps = [rot[k] * np.sqrt(lam) for k, lam in LAMBDAS.items()]
    d1, d2 = (len(v) for v in LAMBDAS.values())
    cov = np.zeros((d1 + d2, d1 + d2))
    cov[:d1, :d1] = maps[0] @ maps[0].T
    cov[d1:, d1:] = maps[1] @ maps[1].T
    cross = rho * maps[0] @ np.eye(SHARED)[:, :d2] @ maps[1].T
    cov[:d1, d1:], cov[d1:, :d1] = cross, cross.T
    return cov


def _closed_form_allocation(m: int) -> dict[str, int]:
    pooled = sorted(((v, k) for k, lam in LAMBDAS.items() for v in lam), reverse=True)[:m]
    return {k: sum(1 for _, owner in pooled if owner == k) for k in LAMBDAS}


def _sq_error(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Per-sample squared error summed over all dimensions of all views."""
    return float(sum(np.mean(np.sum((a[k] - b[k]) ** 2, axis=-1)) for k in a))


@pytest.fixture(scope="module")
def correlated() -> dict[str, np.ndarray]:
    return _sample(100_000, rho=0.3, seed=1)


def test_allocation_and_error_match_closed_form(correlated: dict[str, np.ndarray]) -> None:
    dpca = DPCA.fit(correlated)
    pooled = np.sort(np.concatenate(list(LAMBDAS.values())))[::-1]
    assert np.allclose(dpca.pooled_singular_values**2 / dpca.n_samples, pooled, rtol=0.03)
    for m in range(dpca.max_m + 1):
        alloc = dpca.allocate(m)
        assert alloc == _closed_form_allocation(m)
        z_hat = dpca.decode(dpca.encode(correlated, m))
        err = _sq_error(correlated, z_hat)
        assert err == pytest.approx(dpca.reconstruction_error(m), rel=1e-9, abs=1e-9)  # exact in sample
        assert err == pytest.approx(pooled[m:].sum(), rel=0.03, abs=0.01)  # population closed form


@pytest.mark.parametrize("rho", [0.0, 0.05, 0.3])
def test_lemma_3_1_gap_to_joint_pca(rho: float) -> None:
    """0 <= err(DPCA) - err(PCA) <= -sum_{i>m} e_i^T dX e_i, in sample and in population.

    The printed lemma states this as an equality with an extra factor lambda_i; the bound below
    (without it) is what follows from err(DPCA) = sum of the dropped eigenvalues of the block
    diagonal X_diag and err(PCA) = sum of the dropped eigenvalues of X X^T: it is tight to
    second order in dX, and both sides vanish as the views decorrelate.
    """
    z = _sample(40_000, rho, seed=2)
    dpca, pca = DPCA.fit(z), PCA.fit(z)
    x = np.concatenate([z[k] - z[k].mean(0) for k in LAMBDAS], axis=1)
    for cov in [x.T @ x / len(x), _population_cov(rho)]:
        d1 = len(LAMBDAS["arm"])
        delta = cov.copy()
        delta[:d1, :d1] = delta[d1:, d1:] = 0
        lam, vec = np.linalg.eigh(cov)
        lam, vec = lam[::-1], vec[:, ::-1]
        mu = np.sort(np.linalg.eigvalsh(cov - delta))[::-1]
        for m in range(1, 10):
            gap = mu[m:].sum() - lam[m:].sum()
            bound = -sum(vec[:, i] @ delta @ vec[:, i] for i in range(m, len(lam)))
            assert -1e-9 <= gap <= bound + 1e-9
            if rho == 0.0:
                assert bound < 0.05
    for m in range(1, 10):
        d_err = _sq_error(z, dpca.decode(dpca.encode(z, m)))
        p_err = _sq_error(z, pca.decode(pca.encode(z, m)))
        assert d_err == pytest.approx(dpca.reconstruction_error(m), rel=1e-9)
        assert p_err == pytest.approx(pca.reconstruction_error(m), rel=1e-9)
        assert p_err <= d_err + 1e-9
    if rho == 0.0:  # uncorrelated views: distributed is as good as joint
        assert d_err == pytest.approx(p_err, rel=0.02, abs=0.01)


def test_encode_decode_api_and_batch_shapes(correlated: dict[str, np.ndarray]) -> None:
    dpca = DPCA.fit(correlated, max_components={"arm": 4, "side": 3})
    assert dpca.ranks == (4, 3) and dpca.max_m == 7 and dpca.dims == (6, 4)
    sample = {k: v[:10].reshape(2, 5, -1) for k, v in correlated.items()}
    coeffs = dpca.encode(sample, m=5)
    assert {k: c.shape for k, c in coeffs.items()} == {"arm": (2, 5, 3), "side": (2, 5, 2)}
    out = dpca.decode(coeffs)
    assert out["arm"].shape == (2, 5, 6) and out["side"].shape == (2, 5, 4)
    # explicit dims, a view with 0 dims decodes to its mean
    coeffs = dpca.encode(sample, dims={"arm": 2})
    assert coeffs["side"].shape == (2, 5, 0)
    assert np.allclose(dpca.decode(coeffs)["side"], dpca.means[1])
    assert np.allclose(dpca.decode({"arm": coeffs["arm"]})["side"], dpca.means[1])
    # a sequence of views works too, named "0", "1", ...
    seq = DPCA.fit([correlated["arm"][:500], correlated["side"][:500]])
    assert seq.view_names == ("0", "1")
    for bad in [
        lambda: dpca.allocate(8),
        lambda: dpca.encode(sample, m=2, dims={"arm": 1}),
        lambda: dpca.encode(sample, dims={"arm": 5}),
        lambda: dpca.encode({"arm": sample["arm"]}, m=2),
        lambda: dpca.decode({"nose": np.zeros((1, 1))}),
        lambda: DPCA.fit({"a": np.zeros((5, 2)), "b": np.zeros((6, 2))}),
    ]:
        with pytest.raises(ValueError):
            bad()


def test_state_dict_round_trip_through_npz(correlated: dict[str, np.ndarray], tmp_path) -> None:
    dpca = DPCA.fit(correlated, standardize=True)
    state = dpca.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    np.savez(tmp_path / "dpca.npz", **state)
    with np.load(tmp_path / "dpca.npz", allow_pickle=False) as data:
        loaded = DPCA.from_state_dict(dict(data))
    sample = {k: v[:50] for k, v in correlated.items()}
    for m in [0, 3, 10]:
        a, b = dpca.encode(sample, m), loaded.encode(sample, m)
        assert all(np.array_equal(a[k], b[k]) for k in a)
    assert all(np.array_equal(s, t) for s, t in zip(dpca.sigma_idx, loaded.sigma_idx, strict=False))
    assert np.array_equal(dpca.order, loaded.order)
    pca = PCA.fit(correlated, max_components=5)
    pca2 = PCA.from_state_dict(pca.state_dict())
    assert np.array_equal(pca.encode(sample, 5), pca2.encode(sample, 5))
    with pytest.raises(ValueError, match="missing key"):
        DPCA.from_state_dict({"view_names": np.array(["a"])})


def test_standardize_and_sigma_idx(correlated: dict[str, np.ndarray]) -> None:
    scaled = dict(correlated, side=correlated["side"] * 100.0)
    raw, std = DPCA.fit(scaled), DPCA.fit(scaled, standardize=True)
    assert raw.allocate(4) == {"arm": 0, "side": 4}  # the loud view takes everything
    assert std.allocate(4)["arm"] > 0
    assert std.scales[0] == pytest.approx(np.sqrt(LAMBDAS["arm"].sum() / 6), rel=0.03)
    assert std.scales[1] == pytest.approx(100 * np.sqrt(LAMBDAS["side"].sum() / 4), rel=0.03)
    z_hat = std.decode(std.encode(scaled, std.max_m))
    assert _sq_error(scaled, z_hat) < 1e-12 * std.reconstruction_error(0)
    assert std.reconstruction_error(0) == pytest.approx(raw.reconstruction_error(0))
    for k in range(2):
        assert np.array_equal(raw.sigma_idx[k], scale_index(np.sqrt(raw.variances[k])))


def test_wide_and_tall_data_match_numpy_svd() -> None:
    rng = np.random.default_rng(3)
    # N = 30 < d = 200 takes the economy SVD, N = 30 >= d = 25 the d x d Gram matrix
    data = {
        "wide": rng.standard_normal((30, 200)) * np.linspace(3, 0.1, 200),
        "tall": rng.standard_normal((30, 25)),
    }
    dpca = DPCA.fit(data, max_components=20)
    assert [c.shape for c in dpca.components] == [(200, 20), (25, 20)]
    for k, x in enumerate(data.values()):
        x = x - x.mean(0)
        _, sv, vt = np.linalg.svd(x, full_matrices=False)
        assert np.allclose(dpca.singular_values[k], sv[:20], rtol=1e-8)
        basis = dpca.components[k]
        assert np.allclose(basis.T @ basis, np.eye(20), atol=1e-10)
        assert np.allclose(np.abs(basis.T @ vt[:20].T), np.eye(20), atol=1e-6)  # same axes up to sign
        # canonical sign: the largest-magnitude entry of every axis is positive
        assert np.all(basis[np.abs(basis).argmax(0), np.arange(20)] > 0)


def test_from_covariances_matches_population_allocation() -> None:
    cov = _population_cov(0.3)
    d1 = len(LAMBDAS["arm"])
    dpca = DPCA.from_covariances(
        {"arm": np.zeros(d1), "side": np.zeros(4)}, {"arm": cov[:d1, :d1], "side": cov[d1:, d1:]}
    )
    for m in range(11):
        assert dpca.allocate(m) == _closed_form_allocation(m)
    pooled = np.sort(np.concatenate(list(LAMBDAS.values())))[::-1]
    assert dpca.reconstruction_error(4) == pytest.approx(pooled[4:].sum())


# -- training-time projection (Algorithm 1) ----------------------------------------------------


def _torch_views(batch: int, seed: int) -> dict[str, torch.Tensor]:
    z = _sample(batch, 0.3, seed)
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in z.items()}


def test_projection_random_dims_gradients_and_small_batches() -> None:
    proj = DPCAProjection({"arm": 6, "side": 4}, m_min=2, m_max=8, momentum=0.05).double()
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for step in range(300):
        z = {k: v.requires_grad_(True) for k, v in _torch_views(4, step).items()}  # batch 4 < d = 6
        out = proj(z, generator=gen)
        assert 2 <= out.m <= 8 and sum(out.dims) == out.m
        assert out.z_hat["arm"].shape == (4, 6) and out.coeffs["side"].shape == (4, out.dims[1])
        loss = sum(((out.z_hat[k] - z[k]) ** 2).sum() for k in z)
        loss.backward()
        assert all(torch.isfinite(z[k].grad).all() for k in z)
        seen.add(out.m)
    assert len(seen) >= 5
    # after many small batches the running covariance approaches the population one
    cov = _population_cov(0.3)
    target = cov[:6, :6]
    running_err = np.linalg.norm(proj.running_cov_0.numpy() - target) / np.linalg.norm(target)
    batch_errs = []
    for seed in range(20):
        x = _torch_views(4, 1000 + seed)["arm"].numpy()
        batch_errs.append(np.linalg.norm(np.cov(x.T) - target) / np.linalg.norm(target))
    assert running_err < 0.5 and running_err < 0.5 * np.mean(batch_errs)
    proj.eval()
    out = proj(_torch_views(500, 99))
    assert out.m == 8


def test_projection_matches_dpca_in_eval_and_full_rank_is_lossless() -> None:
    proj = DPCAProjection([6, 4], momentum=1.0).double()  # momentum 1: plain batch statistics
    z = [torch.tensor(v) for v in _sample(20_000, 0.3, 4).values()]
    full = proj(z, m=10)
    assert all(torch.allclose(a, b, atol=1e-8) for a, b in zip(full.z_hat, z, strict=False))
    assert isinstance(full.z_hat, list)
    proj.eval()
    dpca = proj.to_dpca()
    ref = DPCA.fit([t.numpy() for t in z])
    for m in range(11):
        assert list(dpca.allocate(m).values()) == list(ref.allocate(m).values())
        out = proj(z, m=m)
        assert list(out.dims) == list(ref.allocate(m).values())
        err = float(sum(((a - b) ** 2).sum(1).mean() for a, b in zip(out.z_hat, z, strict=False)))
        assert err == pytest.approx(ref.reconstruction_error(m), rel=1e-6, abs=1e-8)


def test_projection_three_views_and_quantiser_hook() -> None:
    proj = DPCAProjection({"a": 3, "b": 5, "c": 2}, m_min=1, m_max=6)
    z = {k: torch.randn(16, d, requires_grad=True) for k, d in {"a": 3, "b": 5, "c": 2}.items()}
    calls = []

    def hook(k: int, c: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        calls.append(k)
        assert var.shape == (c.shape[1],)
        return quantize_ste(c, 0.1)

    out = proj(z, m=6, coeff_fn=hook)
    assert calls == [0, 1, 2] and sum(out.dims) == 6 and len(out.variances) == 3
    sum(v.sum() for v in out.z_hat.values()).backward()
    assert all(z[k].grad is not None for k in z)
    with pytest.raises(ValueError):
        proj({"a": torch.zeros(2, 3), "b": torch.zeros(2, 5)})
    with pytest.raises(ValueError):
        DPCAProjection([2, 2], m_min=3, m_max=2)
