"""The model's parts against hand values: the whitening adapter, the spatial context mixer, the positional encoding, the tail-aware loss, the Mahalanobis router and the scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from moleflow.model import (
    MahalanobisRouter,
    SpatialContextMixer,
    TailAwareLoss,
    WhiteningAdapter,
    anomaly_maps,
    gaussian_blur,
    image_scores,
    positional_encoding_2d,
)


def test_whitening_adapter_init_and_normalisation() -> None:
    wa = WhiteningAdapter(16)
    wa.add_task(0, gamma_init=1.0)
    wa.add_task(1, gamma_init=1.25)
    for task, gamma0 in ((0, 1.0), (1, 1.25)):
        gamma, beta = wa.gamma_beta(task)
        torch.testing.assert_close(gamma, torch.full((16,), gamma0))
        assert torch.all(beta == 0)
    x = 5 + 3 * torch.randn(4, 16)
    y = wa(x, 0)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    with torch.no_grad():
        wa.g["0"].fill_(100.0)
        wa.b["0"].fill_(100.0)
    gamma, beta = wa.gamma_beta(0)
    assert torch.allclose(gamma, torch.tensor(2.0)) and torch.allclose(beta, torch.tensor(2.0))  # eqs. 9-10 bounds


def test_spatial_mixer_starts_as_gated_box_filter() -> None:
    mixer = SpatialContextMixer(4, kernel=3, gate_init=0.5)
    x = torch.ones(1, 5, 5, 4)
    y = mixer(x)
    gate = torch.sigmoid(torch.tensor(0.5))
    torch.testing.assert_close(y[0, 2, 2], torch.ones(4))  # interior: box filter of ones is one
    torch.testing.assert_close(y[0, 0, 0], (1 - gate) + gate * 4 / 9 * torch.ones(4))  # zero-padded corner


def test_positional_encoding_layout() -> None:
    enc = positional_encoding_2d(8, height=3, width=4)
    h, w = 2, 3
    assert enc.shape == (3, 4, 8)
    torch.testing.assert_close(enc[h, w, 0], torch.tensor(math.sin(w)))
    torch.testing.assert_close(enc[h, w, 1], torch.tensor(math.cos(w)))
    torch.testing.assert_close(enc[h, w, 2], torch.tensor(math.sin(w * 10000 ** (-2 / 4))))
    torch.testing.assert_close(enc[h, w, 4], torch.tensor(math.sin(h)))
    torch.testing.assert_close(enc[h, w, 5], torch.tensor(math.cos(h)))


def test_tail_aware_loss_by_hand() -> None:
    nll = torch.arange(2 * 10, dtype=torch.float32).reshape(2, 2, 5)  # image 0: 0..9, image 1: 10..19
    logdet = torch.full((2, 2, 5), 2.0)
    loss, parts = TailAwareLoss(tail_weight=0.7, top_k_ratio=0.2, logdet_reg=0.01)(nll, logdet)
    mean_all = 9.5
    tail = ((9 + 8) / 2 + (19 + 18) / 2) / 2  # top ceil(0.2 * 10) = 2 patches per image
    assert float(loss) == pytest.approx(0.3 * mean_all + 0.7 * tail + 0.01 * 4.0)
    assert float(parts["tail"]) == pytest.approx(tail)
    plain, _ = TailAwareLoss(tail_weight=0.0, logdet_reg=0.0)(nll, logdet)
    assert float(plain) == pytest.approx(mean_all)
    # the authors' non-tail path: each image's NLL summed over its 10 patches (45 and 145), averaged over images
    summed, _ = TailAwareLoss(tail_weight=0.0, logdet_reg=0.01, nll_reduction="image_sum")(nll, logdet)
    assert float(summed) == pytest.approx((45 + 145) / 2 + 0.01 * 4.0)  # the regulariser 10x weaker relative to NLL
    mixed, _ = TailAwareLoss(tail_weight=0.7, top_k_ratio=0.2, logdet_reg=0.01, nll_reduction="image_sum")(nll, logdet)
    assert float(mixed) == pytest.approx(0.3 * 95 + 0.7 * tail + 0.01 * 4.0)


@pytest.mark.parametrize("covariance", ["ledoit_wolf", "ridge"])
def test_router_is_perfect_on_distinct_tasks(covariance: str) -> None:
    rng = np.random.default_rng(0)
    router = MahalanobisRouter(covariance)
    centres = rng.normal(0, 5, (4, 32))
    for c in centres:
        router.add_task(c + rng.normal(0, 1, (20, 32)))  # fewer images than dimensions: singular covariance
    test = np.concatenate([c + rng.normal(0, 1, (10, 32)) for c in centres])
    routed = router(torch.from_numpy(test).float())
    assert routed.tolist() == np.repeat(np.arange(4), 10).tolist()
    clone = MahalanobisRouter(covariance)
    clone.load_state_dict(router.state_dict())
    assert clone.n_tasks == 4 and torch.equal(
        clone.distances(torch.from_numpy(test)), router.distances(torch.from_numpy(test))
    )


def test_scoring() -> None:
    scores = torch.zeros(2, 4, 4)
    scores[0, 1, 2] = 9.0
    scores[0, 3, 3] = 6.0
    scores[0, 0, 0] = 3.0
    assert image_scores(scores, top_k=3).tolist() == [6.0, 0.0]
    maps = anomaly_maps(scores, size=32, sigma=2.0)
    assert maps.shape == (2, 32, 32) and torch.all(maps[1] == 0)
    flat = gaussian_blur(torch.full((1, 20, 20), 7.0), sigma=2.0)
    torch.testing.assert_close(flat, torch.full((1, 20, 20), 7.0))
    peak = divmod(int(maps[0].argmax()), 32)
    assert abs(peak[0] - 1 * 31 / 3) <= 2 and abs(peak[1] - 2 * 31 / 3) <= 2  # align_corners=True geometry
