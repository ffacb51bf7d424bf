"""The model's building blocks against values computed by hand: defaults, errors, and the branches the
end-to-end tests reach only at settings where a wrong constant gives the same number."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.covariance import LedoitWolf

from moleflow.model import (
    GaussianMemory,
    GridShape,
    LoRALinear,
    MahalanobisRouter,
    MoLEContextSubnet,
    SubnetConfig,
    TailAwareLoss,
    anomaly_maps,
    build_coupling_flow,
    gaussian_blur,
    image_scores,
)
from moleflow.model.coupling import MoLEJointSubnet, lora_layers
from moleflow.model.gaussian_memory import unit_rows
from moleflow.model.lora import MergedLoRA
from moleflow.model.scoring import border_index, gaussian_kernel1d


# ---------------------------------------------------------------- Tail-Aware Loss
def test_tail_aware_loss_defaults_are_the_papers() -> None:
    """w 0.7, k = ceil(2 % of the patches), lambda 1e-4 on the mean squared log-det (3^2 = 9, not 2 x 3)."""
    nll = torch.arange(2 * 150, dtype=torch.float32).reshape(2, 10, 15)
    logdet = torch.full((2, 10, 15), 3.0)
    loss, parts = TailAwareLoss()(nll, logdet)
    flat = nll.reshape(2, -1)
    tail = flat.topk(3, dim=1).values.mean()  # ceil(0.02 * 150) = 3
    expected = 0.3 * flat.mean() + 0.7 * tail + 1e-4 * 9.0
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert set(parts) == {"nll", "tail", "logdet_sq"} and float(parts["logdet_sq"]) == 9.0
    assert float(parts["nll"]) == pytest.approx(float(flat.mean()))


def test_tail_aware_loss_parts_follow_the_terms_it_has() -> None:
    nll, logdet = torch.rand(2, 4, 4), torch.rand(2, 4, 4)
    _, parts = TailAwareLoss(tail_weight=0.0, logdet_reg=0.0)(nll, logdet)
    assert set(parts) == {"nll"}
    _, parts = TailAwareLoss(tail_weight=1.0, logdet_reg=0.0)(nll, logdet)
    assert set(parts) == {"nll", "tail"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tail_weight": 1.5}, "tail_weight must lie in"),
        ({"tail_weight": -0.1}, "tail_weight must lie in"),
        ({"nll_reduction": "sum"}, "nll_reduction must be"),
        ({"k_rounding": "round"}, "k_rounding must be"),
    ],
)
def test_tail_aware_loss_refuses_settings_it_does_not_have(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TailAwareLoss(**kwargs)


# ---------------------------------------------------------------- the Mahalanobis router
def _buffer(module: torch.nn.Module, name: str) -> torch.Tensor:
    value = getattr(module, name)
    assert isinstance(value, torch.Tensor)
    return value


def _ridge_by_hand(feats: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    mean = feats.mean(axis=0)
    centered = feats - mean
    cov = centered.T @ centered / (len(feats) - 1) + ridge * np.eye(feats.shape[1])
    return mean, np.linalg.inv(cov)


@pytest.mark.parametrize("n", [2, 5])
def test_router_ridge_prototype_is_the_unbiased_covariance_plus_ridge(n: int) -> None:
    """n - 1 in the denominator, + ridge on the diagonal, NumPy's float64 inverse bit for bit (n = 2: the
    smallest task the router accepts)."""
    rng = np.random.default_rng(4)
    feats = rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5]
    router = MahalanobisRouter("ridge", ridge=0.3)
    assert router.add_task(feats) == 0
    mean, precision = _ridge_by_hand(feats, 0.3)
    assert _buffer(router, "precision_0").dtype == torch.float64 and _buffer(router, "mean_0").dtype == torch.float64
    assert torch.equal(_buffer(router, "mean_0"), torch.from_numpy(mean))
    assert torch.equal(_buffer(router, "precision_0"), torch.from_numpy(precision))
    from_float32 = MahalanobisRouter("ridge", ridge=0.3)  # float32 features are read as float64 before any sum
    from_float32.add_task(torch.from_numpy(feats.astype(np.float32)))
    _, exact = _ridge_by_hand(feats.astype(np.float32).astype(np.float64), 0.3)
    assert torch.equal(_buffer(from_float32, "precision_0"), torch.from_numpy(exact))
    test = rng.normal(size=(4, 3))
    diff = test - mean
    np.testing.assert_allclose(
        router.distances(torch.from_numpy(test).float())[:, 0].numpy(),
        np.einsum("bi,ij,bj->b", diff, precision, diff),
        rtol=1e-6,
    )


@pytest.mark.parametrize("n", [2, 6])
def test_router_float32_prototype_is_torchs_on_float32(n: int) -> None:
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(n, 3)).astype(np.float32)
    router = MahalanobisRouter("ridge", ridge=0.2, dtype=torch.float32)
    router.add_task(feats)
    x = torch.from_numpy(feats)
    centered = x - x.mean(dim=0)
    cov = centered.T @ centered / (n - 1) + 0.2 * torch.eye(3)
    assert _buffer(router, "precision_0").dtype == torch.float32
    torch.testing.assert_close(_buffer(router, "precision_0"), torch.linalg.inv(cov), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(_buffer(router, "mean_0"), x.mean(dim=0))
    probe = torch.randn(3, 3, dtype=torch.float64)  # float64 features are scored in the router's float32
    diff = probe.float() - x.mean(dim=0)
    torch.testing.assert_close(router.distances(probe)[:, 0], ((diff @ torch.linalg.inv(cov)) * diff).sum(dim=1))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_router_ledoit_wolf_prototype_is_scikit_learns(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(6)
    feats = rng.normal(size=(8, 4)) + 2.0
    router = MahalanobisRouter("ledoit_wolf", dtype=dtype)
    router.add_task(feats)
    fit = LedoitWolf(assume_centered=False).fit(feats)
    assert _buffer(router, "precision_0").dtype == dtype and _buffer(router, "mean_0").dtype == dtype
    np.testing.assert_allclose(_buffer(router, "precision_0").double().numpy(), fit.precision_, rtol=1e-5)
    np.testing.assert_allclose(_buffer(router, "mean_0").double().numpy(), feats.mean(axis=0), rtol=1e-6)


def test_router_defaults_are_the_authors_ridge() -> None:
    router = MahalanobisRouter()
    assert (router.covariance, router.ridge, router.dtype) == ("ridge", 1e-5, torch.float64)


def test_router_refuses_what_it_cannot_fit() -> None:
    with pytest.raises(ValueError, match="covariance must be"):
        MahalanobisRouter("empirical")
    router = MahalanobisRouter()
    with pytest.raises(ValueError, match="at least two"):
        router.add_task(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="at least two"):
        router.add_task(np.zeros((4, 3, 2)))
    assert router.n_tasks == 0


# ---------------------------------------------------------------- scoring
@pytest.mark.parametrize("padding", ["reflect", "mirror"])
@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_blur_is_scipys_gaussian_filter(padding: str, sigma: float) -> None:
    """Kernel radius int(4 sigma + 0.5), weights exp(-x^2 / 2 sigma^2), float64 maps stay float64."""
    maps = torch.rand(2, 9, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    ours = gaussian_blur(maps, sigma, padding)
    assert ours.dtype == torch.float64
    scipy = np.stack([ndimage.gaussian_filter(m.numpy(), sigma, mode=padding, truncate=4.0) for m in maps])
    np.testing.assert_allclose(ours.numpy(), scipy, atol=1e-7)


def test_gaussian_kernel_by_hand() -> None:
    kernel = gaussian_kernel1d(1.5)
    x = np.arange(-6, 7)  # radius int(4 * 1.5 + 0.5) = 6
    weights = np.exp(-0.5 * (x / 1.5) ** 2)
    np.testing.assert_allclose(kernel.numpy(), weights / weights.sum(), rtol=1e-6)


def test_blur_at_sigma_0_is_the_identity_and_one_sample_lines_repeat_it() -> None:
    maps = torch.rand(1, 5, 5)
    assert gaussian_blur(maps, 0.0) is maps
    for padding in ("reflect", "mirror"):
        assert border_index(1, 3, padding).tolist() == [0] * 7
    assert border_index(3, 2, "reflect").tolist() == [1, 0, 0, 1, 2, 2, 1]
    assert border_index(3, 2, "mirror").tolist() == [2, 1, 0, 1, 2, 1, 0]
    with pytest.raises(ValueError, match="padding must be one of"):
        border_index(3, 2, "wrap")


def test_image_score_top_k_values_and_default() -> None:
    scores = torch.tensor([[[1.0, 5.0], [3.0, 9.0]], [[2.0, 2.0], [8.0, 0.0]]])
    assert image_scores(scores).tolist() == pytest.approx([17 / 3, 4.0])  # default K = 3
    assert image_scores(scores, top_k=1).tolist() == [9.0, 8.0]
    assert image_scores(scores, top_k=0).tolist() == [4.5, 3.0]
    assert image_scores(scores, top_k=10).tolist() == [4.5, 3.0]  # K beyond the grid: every patch


def test_anomaly_map_default_sigma_is_4() -> None:
    scores = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(anomaly_maps(scores, 24), anomaly_maps(scores, 24, sigma=4.0, padding="reflect"))
    assert not torch.allclose(anomaly_maps(scores, 24), anomaly_maps(scores, 24, sigma=5.0))
    up = torch.nn.functional.interpolate(scores[:, None], size=(24, 24), mode="bilinear", align_corners=True)[:, 0]
    torch.testing.assert_close(anomaly_maps(scores, 24, 2.0, "mirror"), gaussian_blur(up, 2.0, "mirror"))
    assert not torch.allclose(anomaly_maps(scores, 24, 2.0, "mirror"), anomaly_maps(scores, 24, 2.0, "reflect"))


# ---------------------------------------------------------------- LoRA
def test_lora_defaults_and_task_bias_is_added() -> None:
    layer = LoRALinear(4, 3)
    assert (layer.rank, layer.scale, layer.task0_adapters) == (64, 1.0 / 64, True)
    layer.add_task(0)
    layer.add_task(1)
    x = torch.randn(5, 4)
    with torch.no_grad():
        layer.task_bias["1"].fill_(0.25)
    layer.set_task(1)
    torch.testing.assert_close(layer(x), layer.base(x) + 0.25)


@pytest.mark.parametrize("grads", ["a", "b", "x"])
def test_merged_lora_gradients_for_one_adapter_factor_and_leading_dims(grads: str) -> None:
    """Only A (or only B, or only x) asks for a gradient, and x has two leading dims ``(2, 4, in)``."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, dtype=torch.float64, generator=g, requires_grad=grads == "x")
    weight = torch.randn(5, 6, dtype=torch.float64, generator=g)
    bias = torch.randn(5, dtype=torch.float64, generator=g)
    a = torch.randn(3, 6, dtype=torch.float64, generator=g, requires_grad=grads == "a")
    b = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=grads == "b")
    assert torch.autograd.gradcheck(lambda *t: MergedLoRA.apply(*t, 0.5), (x, weight, bias, a, b))


def test_merged_lora_weight_gradient_with_leading_dims() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=g)
    weight = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    bias = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=True)
    a = torch.randn(2, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(5, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: MergedLoRA.apply(*t, 0.5), (x, weight, bias, a, b))


# ---------------------------------------------------------------- the coupling flow
def test_coupling_flow_passes_every_lora_setting_and_the_clamp() -> None:
    cfg = SubnetConfig(rank=2, alpha=3.0, use_lora=False, task_bias=False, task0_adapters=False, context_kernel=3)
    flow = build_coupling_flow(8, 2, GridShape(), cfg, clamp=2.5)
    layers = lora_layers(flow)
    assert layers and all(
        (m.rank, m.scale, m.use_lora, m.use_task_bias, m.task0_adapters) == (2, 1.5, False, False, False)
        for m in layers
    )
    assert [block.clamp for block in flow.module_list] == [2.5, 2.5]
    default = build_coupling_flow(8, 2, GridShape(), SubnetConfig(context_kernel=3))
    assert [block.clamp for block in default.module_list] == [1.9, 1.9]
    assert all(
        (m.rank, m.use_lora, m.use_task_bias, m.task0_adapters) == (64, True, True, True) for m in lora_layers(default)
    )


def test_coupling_flow_permutations_default_to_the_block_index_seeds() -> None:
    def perms(flow) -> list[list[int]]:
        return [block.perm_index.tolist() for block in flow.module_list]

    cfg = SubnetConfig(context_kernel=3)
    default = build_coupling_flow(16, 3, GridShape(), cfg)
    assert perms(default) == perms(build_coupling_flow(16, 3, GridShape(), cfg, permutation_seeds=(0, 1, 2)))
    assert perms(default) != perms(build_coupling_flow(16, 3, GridShape(), cfg, permutation_seeds=(5, 6, 7)))
    with pytest.raises(ValueError, match="3 coupling blocks need 3 permutation seeds, got 2"):
        build_coupling_flow(16, 3, GridShape(), cfg, permutation_seeds=(0, 1))
    with pytest.raises(ValueError, match="^the joint subnet has no scale context: set model.scale_context false"):
        build_coupling_flow(16, 3, GridShape(), SubnetConfig(joint=True, scale_context=True))
    block = default.module_list[0]
    assert {"perm_index", "perm_index_inv"} <= {name for name, _ in block.named_buffers()}  # moved with .to(device)
    assert "perm_index" not in block.state_dict()  # the matrix is what a checkpoint keeps


def test_gather_permutation_refuses_gin() -> None:
    from FrEIA.framework import SequenceINN

    from moleflow.model.coupling import GatherPermutationBlock

    message = r"needs vector inputs, a hard permutation \(permute_soft=False, no Householder\) and no GIN"
    with pytest.raises(ValueError, match=f"^GatherPermutationBlock {message}$"):
        SequenceINN(8).append(
            GatherPermutationBlock, subnet_constructor=lambda i, o: torch.nn.Linear(i, o), gin_block=True
        )


def test_context_subnet_widths_and_depthwise_context_by_hand() -> None:
    cfg = SubnetConfig(rank=2, context_kernel=3, hidden_ratio=1.5, context_alpha_max=0.2)
    grid = GridShape(batch=1, height=3, width=3)
    subnet = MoLEContextSubnet(4, 8, grid, cfg)
    assert subnet.s1.base.out_features == 12 and subnet.t1.base.out_features == 12  # round(1.5 * 2 * 4)
    conv = subnet.context_conv
    assert conv is not None and conv.groups == 4 and tuple(conv.weight.shape) == (4, 1, 3, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        subnet.theta_s.fill_(1.0)
    x1 = torch.randn(9, 4)
    box = torch.nn.functional.conv2d(
        x1.reshape(1, 3, 3, 4).permute(0, 3, 1, 2), torch.ones(4, 1, 3, 3), padding=1, groups=4
    )
    expected = 0.2 * (1 / (1 + math.exp(-1.0))) * box.permute(0, 2, 3, 1).reshape(9, 4)
    torch.testing.assert_close(subnet.context(x1), expected)
    tiny = SubnetConfig(rank=1, context_kernel=3, hidden_ratio=0.25)
    assert MoLEContextSubnet(2, 4, grid, tiny).s1.base.out_features == 1  # round(0.25 * 2 * 2) = 1
    assert MoLEJointSubnet(2, 4, tiny).l1.base.out_features == 1


# ---------------------------------------------------------------- DNE's Gaussian memory
def test_gaussian_memory_defaults_errors_and_small_distances() -> None:
    memory = GaussianMemory()
    assert (memory.density, memory.seed) == ("pooled", 0)
    with pytest.raises(ValueError, match="density must be one of"):
        GaussianMemory("nearest")
    with pytest.raises(ValueError, match="at least two"):
        memory.add_task(np.ones((3, 2, 2)))
    assert unit_rows(np.ones((2, 3), dtype=np.float32)).dtype == np.float64
    rng = np.random.default_rng(8)
    train = rng.normal(size=(2, 3)) + [3.0, 0.0, 0.0]  # two embeddings: the fewest a Gaussian takes
    memory.add_task(train)
    z = train / np.linalg.norm(train, axis=1, keepdims=True)
    near = z.mean(axis=0, keepdims=True) + 1e-3  # a point close to the mean: distance well below 1
    fit = LedoitWolf().fit(z)
    diff = near / np.linalg.norm(near) - z.mean(axis=0)
    by_hand = np.sqrt(np.einsum("bi,ij,bj->b", diff, fit.precision_, diff))
    assert by_hand[0] < 1.0
    np.testing.assert_allclose(memory(torch.from_numpy(near), 0).numpy(), by_hand, rtol=1e-6)


@pytest.mark.parametrize("reverse_permutation", [False, True])
def test_gather_permutation_is_freias_block_forward_and_back(reverse_permutation: bool) -> None:
    """The gather form against FrEIA's own AllInOneBlock with the same weights, also with FrEIA's
    ``reverse_permutation`` (the inverse permutation applied before the block, Putzky et al.)."""
    from FrEIA.modules import AllInOneBlock

    from moleflow.model.coupling import GatherPermutationBlock

    def block(cls: type) -> torch.nn.Module:
        np.random.seed(3)
        torch.manual_seed(3)
        return cls(
            [(8,)],
            subnet_constructor=lambda i, o: torch.nn.Sequential(
                torch.nn.Linear(i, 16), torch.nn.ReLU(), torch.nn.Linear(16, o)
            ),
            affine_clamping=1.9,
            permute_soft=False,
            reverse_permutation=reverse_permutation,
        )

    freia, ours = block(AllInOneBlock), block(GatherPermutationBlock)
    with torch.no_grad():
        for p in freia.parameters():
            if p.requires_grad:  # not the permutation matrices
                p.add_(0.1 * torch.randn_like(p))
        _buffer(freia, "global_offset").add_(0.3)
    ours.load_state_dict(freia.state_dict())
    x = torch.randn(5, 8, dtype=torch.float32)
    (z_f,), jac_f = freia([x])
    (z_o,), jac_o = ours([x])
    torch.testing.assert_close(z_o, z_f)
    torch.testing.assert_close(jac_o, jac_f)
    (back,), _ = ours([z_o], rev=True)
    (back_f,), _ = freia([z_f], rev=True)
    torch.testing.assert_close(back, back_f)
    torch.testing.assert_close(back, x, atol=1e-5, rtol=1e-5)


def test_a_float32_ledoit_wolf_router_takes_its_mean_of_float32_features() -> None:
    """float64 features given to a float32 router are read as float32 first: its mean is NumPy's float32 mean, not
    the float64 mean rounded afterwards (the two differ in the last bits)."""
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(257, 6)) * 10.0 + 0.1
    router = MahalanobisRouter("ledoit_wolf", dtype=torch.float32)
    router.add_task(feats)
    as32 = feats.astype(np.float32)
    assert torch.equal(_buffer(router, "mean_0"), torch.from_numpy(as32.mean(axis=0)))
    assert not np.array_equal(as32.mean(axis=0), feats.mean(axis=0).astype(np.float32))  # the test can tell
