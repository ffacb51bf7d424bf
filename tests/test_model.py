"""MoLE-Flow modules: invertibility, exact log-determinants, zero-initialised adapters, loss, router, scoring."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from moleflow.model import (
    AffineCouplingBlock,
    DeepInvertibleAdapter,
    GridShape,
    LoRALinear,
    ModelConfig,
    MoLEContextSubnet,
    MoLEFlow,
    SubnetConfig,
    build_coupling_flow,
)
from moleflow.model.mole_flow import is_fixed_parameter


def _perturb(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    """Move every trainable parameter away from its (often zero) initialisation."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not is_fixed_parameter(name):
                p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _jacobian_logdet(fn, x: torch.Tensor) -> float:
    jac = torch.autograd.functional.jacobian(lambda v: fn(v.reshape(x.shape)).reshape(-1), x.reshape(-1))
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign != 0
    return float(logabs)


@pytest.mark.parametrize("scale_context", [True, False])
def test_each_coupling_block_inverts_with_exact_logdet(scale_context: bool) -> None:
    torch.manual_seed(0)
    grid = GridShape(batch=2, height=3, width=2)
    cfg = SubnetConfig(rank=2, scale_context=scale_context, context_kernel=3)
    for k in range(3):
        flow = build_coupling_flow(8, 1, grid, cfg, permutation_seeds=(k,)).double()
        _perturb(flow, seed=k)
        x = torch.randn(12, 8, dtype=torch.float64)
        z, logdet = flow(x)
        back, inv_logdet = flow(z, rev=True)
        torch.testing.assert_close(back, x, rtol=0, atol=1e-12)
        torch.testing.assert_close(inv_logdet, -logdet, rtol=0, atol=1e-12)
        assert _jacobian_logdet(lambda v, flow=flow: flow(v)[0], x) == pytest.approx(
            float(logdet.detach().sum()), abs=1e-9
        )


class _Joined(MoLEContextSubnet):
    """FrEIA's subnet form of :class:`MoLEContextSubnet`: ``[s, t]`` as one ``(N, D)`` tensor (the same parameters)."""

    def forward(self, x1: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.cat(super().forward(x1), dim=1)


def test_gather_permutation_equals_freia_permutation_matrix_bitwise() -> None:
    """The column gather and the subnet's ``(s, t)`` pair give FrEIA's block bit for bit (``F.linear(x, P)``, and
    ``[s, t]`` concatenated, scaled in place and sliced): outputs, inverse and gradients."""
    from FrEIA.modules import AllInOneBlock

    from moleflow.model.coupling import GatherPermutationBlock

    grid = GridShape(batch=2, height=4, width=4)
    cfg = SubnetConfig(rank=4, context_kernel=3)
    blocks = []
    for cls in (AllInOneBlock, GatherPermutationBlock):
        torch.manual_seed(3)
        np.random.seed(3)
        subnet = _Joined if cls is AllInOneBlock else MoLEContextSubnet
        block = cls(
            [(16,)],
            subnet_constructor=lambda c_in, c_out, subnet=subnet: subnet(c_in, c_out, grid, cfg),
            affine_clamping=1.9,
            global_affine_type="SOFTPLUS",
            permute_soft=False,
        )
        _perturb(block.subnet, seed=4)
        with torch.no_grad():
            block.global_offset.add_(0.1)
        blocks.append(block)
    plain, gather = blocks
    assert plain.state_dict().keys() == gather.state_dict().keys()  # checkpoints and fingerprints unchanged
    x = torch.randn(32, 16, generator=torch.Generator().manual_seed(5))
    outs = []
    for block in blocks:
        xin = x.clone().requires_grad_(True)
        (z,), logdet = block([xin])
        ((back,), inv_logdet) = block([z], rev=True)
        (z * torch.linspace(-1, 1, 16)).sum().add(logdet.sum()).backward()
        outs.append((z, logdet, back, inv_logdet, xin.grad, *[p.grad for p in block.parameters() if p.requires_grad]))
    assert len(outs[0]) == len(outs[1])
    for a, b in zip(*outs):
        assert a is not None and torch.equal(a, b)
    # a checkpoint with another permutation: the gather follows the loaded matrix
    np.random.seed(11)
    other = AllInOneBlock(
        [(16,)],
        subnet_constructor=lambda c_in, c_out: _Joined(c_in, c_out, grid, cfg),
        affine_clamping=1.9,
        global_affine_type="SOFTPLUS",
        permute_soft=False,
    )
    assert not torch.equal(other.w_perm, plain.w_perm)
    gather.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(gather([x])[0][0], other([x])[0][0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="hard permutation"):
        GatherPermutationBlock(
            [(16,)], subnet_constructor=lambda c_in, c_out: MoLEContextSubnet(c_in, c_out, grid, cfg), permute_soft=True
        )


def test_dia_block_inverts_with_exact_logdet() -> None:
    torch.manual_seed(1)
    for flip in (False, True):
        block = AffineCouplingBlock(6, flip=flip).double()
        _perturb(block, scale=0.5)
        x = torch.randn(5, 6, dtype=torch.float64)
        y, logdet = block(x)
        back, _ = block(y, rev=True)
        torch.testing.assert_close(back, x, rtol=0, atol=1e-12)
        assert _jacobian_logdet(lambda v, block=block: block(v)[0], x) == pytest.approx(
            float(logdet.detach().sum()), abs=1e-9
        )


def _model(**overrides: Any) -> MoLEFlow:
    kwargs: dict[str, Any] = dict(dim=8, coupling_blocks=3, subnet=SubnetConfig(rank=2, context_kernel=3), dia_blocks=2)
    kwargs.update(overrides)
    return MoLEFlow(ModelConfig(**kwargs))


@pytest.mark.parametrize("task", [0, 1])
def test_whole_flow_with_dia_inverts_with_exact_logdet(task: int) -> None:
    torch.manual_seed(2)
    model = _model()
    model.add_task()
    model.add_task()
    model = model.double()
    _perturb(model)
    x = torch.randn(2, 3, 2, 8, dtype=torch.float64)
    u = model.preprocess(x, task)
    z, ld_flow, ld_dia = model.transform(u, task)
    back, inv_flow, inv_dia = model.transform(z, task, rev=True)
    torch.testing.assert_close(back, u, rtol=0, atol=1e-12)
    torch.testing.assert_close(inv_flow + inv_dia, -(ld_flow + ld_dia), rtol=0, atol=1e-12)
    exact = _jacobian_logdet(lambda v: model.transform(v, task)[0], u)
    assert exact == pytest.approx(float((ld_flow + ld_dia).detach().sum()), abs=1e-9)
    out = model(x, task)
    expected = -0.5 * (z**2).sum(-1) - 4 * math.log(2 * math.pi) + ld_flow + ld_dia
    torch.testing.assert_close(out.log_prob, expected)


def test_new_task_lora_is_exactly_the_base_function() -> None:
    torch.manual_seed(3)
    layer = LoRALinear(6, 5, rank=3)
    _perturb(layer)
    layer.add_task(1)
    x = torch.randn(7, 6)
    layer.set_task(0)
    base = layer(x)
    layer.set_task(1)
    assert torch.equal(layer(x), base)
    # task 0 as the base alone, so that task 0's function is the base function a new task must start from
    model = _model(dia_blocks=0, subnet=SubnetConfig(rank=2, context_kernel=3, task0_adapters=False))
    model.add_task()
    _perturb(model)
    model.add_task()
    u = torch.randn(2, 3, 3, 8)
    assert torch.equal(model.transform(u, 1)[0], model.transform(u, 0)[0])
    with torch.no_grad():
        layer.lora_B["1"].fill_(0.1)
    assert not torch.equal(layer(x), base)


@pytest.mark.parametrize("base_trains", [True, False])
def test_merged_lora_gradients_are_exact(base_trains: bool) -> None:
    """The merged product's hand-written backward against finite differences (float64), with the base
    trained (task 0: the adapter's gradients come from the weight's) or frozen (the thin products)."""
    from moleflow.model.lora import MergedLoRA

    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 6, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(5, 6, dtype=torch.float64, generator=g, requires_grad=base_trains)
    bias = torch.randn(5, dtype=torch.float64, generator=g, requires_grad=base_trains)
    a = torch.randn(3, 6, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: MergedLoRA.apply(*t, 0.25), (x, weight, bias, a, b))
    three = x @ weight.t() + bias + 0.25 * (x @ a.t()) @ b.t()  # the adapter as three products
    torch.testing.assert_close(MergedLoRA.apply(x, weight, bias, a, b, 0.25), three)
    # under torch.func (the Jacobian of the invertibility check runs the backward under vmap)
    jac = torch.func.jacrev(lambda v: MergedLoRA.apply(v, weight, bias, a, b, 0.25))(x[:2])
    torch.testing.assert_close(
        jac, torch.func.jacrev(lambda v: v @ weight.t() + bias + 0.25 * (v @ a.t()) @ b.t())(x[:2])
    )


def test_without_lora_keeps_task_bias_only() -> None:
    layer = LoRALinear(4, 3, rank=2, use_lora=False, task_bias=True)
    layer.add_task(1)
    assert len(layer.lora_A) == 0 and set(layer.task_bias) == {"1"}


def test_dia_identity_at_init_and_zero_blocks() -> None:
    dia = DeepInvertibleAdapter(8, blocks=2)
    dia.add_task(0)
    z = torch.randn(5, 8)
    out, logdet = dia(z, 0)
    assert torch.equal(out, z) and torch.equal(logdet, torch.zeros(5))
    none = DeepInvertibleAdapter(8, blocks=0)
    assert torch.equal(none(z, 0)[0], z)


def test_zero_coupling_blocks_is_a_valid_model() -> None:
    """No coupling block: the flow is the DIA blocks alone; by hand, log p(x) = log N(z; 0, I) + DIA's log-det with
    z = DIA(u) for the preprocessed u, and at initialisation (DIA the identity) z = u and the log-det is 0."""
    torch.manual_seed(0)
    model = _model(coupling_blocks=0)
    model.add_task()
    model = model.double()
    assert model.flow is None
    x = torch.randn(1, 2, 2, 8, dtype=torch.float64)
    u = model.preprocess(x, 0)
    out = model(x, 0)
    by_hand = -0.5 * (u**2).sum(-1) - 4 * math.log(2 * math.pi)
    assert torch.equal(out.z, u) and torch.equal(out.logdet_flow, torch.zeros(1, 2, 2))
    assert torch.allclose(out.log_prob, by_hand, atol=1e-12)
    _perturb(model)  # trained DIA: still exact, now with its own log-det
    assert model.dia is not None
    z, logdet = model.dia(model.preprocess(x, 0).reshape(-1, 8), 0)
    moved = model(x, 0)
    assert not torch.equal(moved.z.reshape(-1, 8), model.preprocess(x, 0).reshape(-1, 8))
    expected = -0.5 * (z**2).sum(-1) - 4 * math.log(2 * math.pi) + logdet
    assert torch.allclose(moved.log_prob.reshape(-1), expected, atol=1e-12)


def test_task_parameters_are_separate() -> None:
    model = _model()
    model.add_task()
    model.add_task()
    base = {id(p) for p in model.base_parameters()}
    t0 = {id(p) for p in model.task_parameters(0)}
    t1 = {id(p) for p in model.task_parameters(1)}
    assert base and t0 and t1 and not (base & t0) and not (base & t1) and not (t0 & t1)
    named = dict(model.named_parameters())
    lora = [n for n in named if ".lora_A.1" in n]
    assert len(lora) == 3 * 4  # 4 LoRA linears per block


@pytest.mark.parametrize("task0_adapters", [True, False])
def test_task0_adapters_key(task0_adapters: bool) -> None:
    """Task 0 owns LoRA adapters and task biases unless ``task0_adapters`` is off; B = 0 and b = 0 at creation,
    so task 0's model starts as the base function either way."""
    from moleflow.model.lora import LoRALinear

    torch.manual_seed(0)
    layer = LoRALinear(6, 4, rank=2, task0_adapters=task0_adapters)
    x = torch.randn(5, 6)
    before = layer(x)
    layer.add_task(0)
    assert ("0" in layer.lora_A) == task0_adapters and ("0" in layer.task_bias) == task0_adapters
    torch.testing.assert_close(layer(x), before, rtol=0, atol=0)
    if task0_adapters:
        with torch.no_grad():
            layer.lora_B["0"].fill_(0.5)
        assert not torch.equal(layer(x), before)  # task 0's adapter is live


def test_lora_alpha_per_rank_keeps_the_adapter_scale_fixed_across_ranks() -> None:
    from moleflow.config import apply_overrides, load_profile
    from moleflow.continual.settings import model_config

    scales = {}
    for per_rank in (False, True):
        for rank in (4, 16):
            cfg = apply_overrides(
                load_profile("cpu"),
                {"model.lora_rank": rank, "model.lora_alpha": 1.0, "model.lora_alpha_per_rank": per_rank},
            )
            sub = model_config(cfg, 8).subnet
            scales[(per_rank, rank)] = LoRALinear(8, 8, rank=sub.rank, alpha=sub.alpha).scale
    assert scales[(False, 4)] == 0.25 and scales[(False, 16)] == 1 / 16  # the paper's: alpha / r moves with r
    assert scales[(True, 4)] == scales[(True, 16)] == 1.0
