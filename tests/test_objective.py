"""The flow's objective: the input maps' exact log-determinant (model.input_jacobian) and the collapse diagnostic.

The log-determinant against autograd's full Jacobian of the maps on a tiny grid; the
bounded objective penalising a mixer that cancels its input where the paper's rewards it;
the diagnostic on every flow run, its separation by hand; flagged rows marked in the tables.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from tests_helpers import continual_synth, tiny

from analysis.latex import to_latex
from analysis.render import FLAG, Cell, TableSpec, to_markdown
from analysis.table_frames import collapse_flags
from moleflow.config import load_config
from moleflow.continual import Learner, run
from moleflow.continual.structure import _defect_cells, collapsed, input_collapse
from moleflow.continual.tasks import load_tasks
from moleflow.errors import ConfigError
from moleflow.features import FeatureStore
from moleflow.model import ModelConfig, MoLEFlow, SubnetConfig, TailAwareLoss
from moleflow.model.jacobian import mixer_logdet

CPU = torch.device("cpu")


def _model(jacobian: str, kernel: int = 3, **extra) -> MoLEFlow:
    torch.manual_seed(0)
    cfg = ModelConfig(
        dim=4,
        coupling_blocks=2,
        mixer_kernel=kernel,
        mixer_bias=True,
        subnet=SubnetConfig(rank=2, context_kernel=3),
        input_jacobian=jacobian,
        **extra,
    )
    model = MoLEFlow(cfg)
    model.add_task()
    model.add_task()
    return model.double()


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("task", [0, 1])
def test_input_logdet_is_the_log_determinant_of_the_maps_full_jacobian(kernel: int, task: int) -> None:
    model = _model("included", kernel)
    assert model.mixer is not None and model.whitening is not None
    with torch.no_grad():  # a trained-looking mixer and adapter: any kernel, a gate off its start, gamma not 1
        model.mixer.conv.weight.normal_(0.0, 0.3)
        model.mixer.theta.fill_(1.3)
        model.whitening.g[str(task)].normal_(0.0, 1.0)
    height, width = 4, 3
    x = torch.randn(1, height, width, 4, dtype=torch.float64)

    def maps(v: torch.Tensor) -> torch.Tensor:  # the trainable maps: whitening's affine, then the mixer
        gamma, beta = model.whitening.gamma_beta(task)  # type: ignore[union-attr]
        return model.mixer(v.reshape(x.shape) * gamma + beta).reshape(-1)  # type: ignore[misc]

    jac = torch.autograd.functional.jacobian(maps, x.reshape(-1))
    full = torch.linalg.slogdet(jac)[1]
    per_patch = model.input_logdet(task, height, width)
    assert float(per_patch.detach()) * height * width == pytest.approx(float(full), abs=1e-9)
    # the log-likelihood carries it with 'included' and not with 'excluded'
    out = model(x, task)
    plain = _model("excluded", kernel)
    plain.load_state_dict(model.state_dict())
    torch.testing.assert_close(out.log_prob - plain(x, task).log_prob, per_patch.expand(1, height, width))
    assert torch.equal(plain(x, task).logdet_input, torch.zeros(1, height, width, dtype=torch.float64))


def test_the_mixer_logdet_is_exact_and_differentiable_against_the_dense_matrix() -> None:
    def dense(weight: torch.Tensor, a: torch.Tensor, height: int, width: int) -> torch.Tensor:
        channels, k = weight.shape[0], weight.shape[-1]
        basis = torch.eye(height * width, dtype=torch.float64).reshape(-1, 1, height, width).repeat(1, channels, 1, 1)
        conv = F.conv2d(basis, weight, padding=k // 2, groups=channels).reshape(height * width, channels, -1)
        matrix = (1 - a) * torch.eye(height * width, dtype=torch.float64) + a * conv.permute(1, 2, 0)
        return torch.linalg.slogdet(matrix)[1]

    torch.manual_seed(3)
    for kernel, (height, width) in [(1, (3, 3)), (3, (5, 4)), (5, (6, 5)), (7, (4, 9))]:
        weight = torch.randn(3, 1, kernel, kernel, dtype=torch.float64, requires_grad=True)
        theta = torch.tensor(0.4, dtype=torch.float64, requires_grad=True)
        ours = mixer_logdet(weight, torch.sigmoid(theta), height, width)
        torch.testing.assert_close(ours, dense(weight.detach(), torch.sigmoid(theta.detach()), height, width))
        grid = (height, width)
        assert torch.autograd.gradcheck(lambda w, t, g=grid: mixer_logdet(w, torch.sigmoid(t), *g), (weight, theta))
    # a mixer close to cancelling its input (the collapse): still exact
    weight = torch.full((2, 1, 3, 3), 1 / 9, dtype=torch.float64)
    weight[:, 0, 1, 1] = -0.326
    a = torch.tensor(0.743, dtype=torch.float64)
    torch.testing.assert_close(mixer_logdet(weight, a, 12, 10), dense(weight, a, 12, 10))


@pytest.mark.parametrize("jacobian", ["excluded", "included"])
def test_a_mixer_that_cancels_its_input_is_rewarded_only_without_the_jacobian(jacobian: str) -> None:
    model = _model(jacobian, spatial_mixer=True)
    x = torch.randn(2, 5, 5, 4, dtype=torch.float64) * 2
    loss_fn = TailAwareLoss(tail_weight=0.7, top_k_ratio=0.1, logdet_reg=0.0)

    def loss() -> float:
        out = model(x, 0)
        return float(loss_fn(-out.log_prob, out.logdet_flow + out.logdet_dia)[0].detach())

    before = loss()
    assert model.mixer is not None
    with torch.no_grad():  # centre tap -(1 - a)/a + eps/a, no neighbours: u = eps x
        a = float(torch.sigmoid(model.mixer.theta))
        model.mixer.conv.weight.zero_()
        model.mixer.conv.weight[:, 0, 1, 1] = (-(1 - a) + 1e-2) / a
    after = loss()
    if jacobian == "excluded":
        assert after < before  # shrinking the flow's input raises every patch's likelihood for free
    else:
        assert after > before  # it pays log(1e-2) per channel and patch for it: the objective is bounded
        assert float(model.input_logdet(0, 5, 5).detach()) < 4 * np.log(2e-2)


def test_included_refuses_a_fallback_adapter_without_an_exact_jacobian() -> None:
    with pytest.raises(ConfigError, match="model.input_jacobian"):
        load_config(
            overrides=["model.input_jacobian=included", "model.whitening=false", "model.whitening_fallback=film"]
        )
    assert load_config(overrides=["model.input_jacobian=included", "model.whitening=false"])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return continual_synth(tmp_path_factory.mktemp("synth"))


def test_every_flow_run_records_the_diagnostic_and_a_memory_bank_none(
    dataset: Path, cache: Path, tmp_path: Path
) -> None:
    summary = run(tiny(dataset, cache), tmp_path / "flow", progress=False, log=lambda *a: None)
    figures = [t["input_collapse"] for t in summary["per_task"]]
    assert len(figures) == 3 and all(isinstance(f["collapsed"], bool) for f in figures)
    assert summary["input_collapse"]["collapsed"] == any(f["collapsed"] for f in figures)
    knn = run(tiny(dataset, cache, "strategy.name=knn"), tmp_path / "knn", progress=False, log=lambda *a: None)
    assert knn["input_collapse"] is None and not any("input_collapse" in t for t in knn["per_task"])


def test_the_diagnostic_by_hand(dataset: Path, cache: Path) -> None:
    config = tiny(dataset, cache, "model.input_jacobian=included")
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    learner.add_task(np.asarray(tasks[0].train.router))
    found = input_collapse(learner.flow(0), 0, 0, tasks[0].train.patches, [tasks[0]], 0, CPU)
    test = tasks[0].test
    with torch.no_grad():
        nll = learner.patch_scores(0, torch.from_numpy(np.asarray(test.patches, dtype=np.float32))).numpy()
        x = torch.from_numpy(np.asarray(tasks[0].train.patches, dtype=np.float32))
        u = learner.flow(0).preprocess(x, 0).reshape(-1, x.shape[-1]).double().numpy()
        logdet = float(learner.flow(0).input_logdet(0, x.shape[1], x.shape[2]))
    labels, masks = np.asarray(test.labels), np.asarray(test.masks)
    height, width = nll.shape[1:]
    cell_h, cell_w = masks.shape[1] // height, masks.shape[2] // width
    share = masks.reshape(len(masks), height, cell_h, width, cell_w).mean(axis=(2, 4))
    good, defect = nll[labels == 0].reshape(-1), nll[labels == 1][share[labels == 1] >= 0.5]
    assert np.array_equal(_defect_cells(masks, height, width), share >= 0.5)
    assert defect.size and found["nll_defect"] == pytest.approx(float(defect.mean()), rel=1e-6)
    assert found["separation"] == pytest.approx((defect.mean() - good.mean()) / good.std(ddof=1), rel=1e-5)
    feats = x.reshape(-1, x.shape[-1]).double().numpy()
    ratio = np.median(np.linalg.eigvalsh(np.cov(u, rowvar=False))) / np.median(
        np.linalg.eigvalsh(np.cov(feats, rowvar=False))
    )
    assert found["eig_median_ratio"] == pytest.approx(ratio, rel=1e-6)  # 8 training images: every one of them
    assert found["input_logdet"] == pytest.approx(logdet, rel=1e-9)
    assert found["logvolume_per_channel"] == pytest.approx(logdet / x.shape[-1], rel=1e-9)
    assert found["collapsed"] == collapsed(found["logvolume_per_channel"])


@pytest.mark.parametrize("strategy", ["frozen_base", "joint"])
def test_the_run_gives_the_diagnostic_its_evaluations_test_nll(
    dataset: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    """A run hands the diagnostic the test NLL its evaluation computed, and the diagnostic's figures are those of
    its own passes bit for bit (the joint flow: every task's test set under the one model)."""
    from moleflow.continual import experiment

    calls = []

    def both(*args, test_nll=None, **kwargs):
        given = input_collapse(*args, test_nll=test_nll, **kwargs)
        assert test_nll is not None and given == input_collapse(*args, **kwargs)
        calls.append([t.category for t in args[4]])
        return given

    monkeypatch.setattr(experiment, "input_collapse", both)
    run(tiny(dataset, cache, f"strategy.name={strategy}"), tmp_path / strategy, progress=False, log=lambda *a: None)
    names = ["cap", "screw", "tile"]
    assert calls == ([[name] for name in names] if strategy == "frozen_base" else [names])


def test_the_diagnostic_reads_the_test_nll_it_is_given(dataset: Path, cache: Path) -> None:
    """Given each test set's patch NLL (the evaluation's oracle scores) the diagnostic computes the same figures as
    from its own passes; another test set's NLL gives other figures; only a test set scored by the model serving
    the task is handed over."""
    from moleflow.continual.evaluate import evaluate_task
    from moleflow.continual.experiment import _oracle_nll
    from moleflow.continual.settings import ScoreSettings

    config = tiny(dataset, cache)
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    for task in tasks[:2]:
        learner.add_task(np.asarray(task.train.router))
    with torch.no_grad():  # adapters away from their identity start, so that the two tasks score differently
        for p in learner.flow(0).parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    scoring = ScoreSettings.from_config(config)
    evaluations = [evaluate_task(learner, t, tasks[t], scoring, CPU) for t in range(2)]
    own = evaluations[1].oracle_patches
    assert own is not None and own.shape == np.asarray(tasks[1].test.patches).shape[:3]
    model = learner.flow(0)
    computed = input_collapse(model, 1, 1, tasks[1].train.patches, [tasks[1]], 0, CPU)
    assert input_collapse(model, 1, 1, tasks[1].train.patches, [tasks[1]], 0, CPU, test_nll=[own]) == computed
    other = evaluations[0].oracle_patches
    assert other is not None
    wrong = input_collapse(model, 1, 1, tasks[1].train.patches, [tasks[1]], 0, CPU, test_nll=[other])
    assert wrong["nll_good"] != computed["nll_good"] and wrong["nll_train"] == computed["nll_train"]
    serving = [(model, 0), (model, 1)]
    found = _oracle_nll(serving, 1, [1], evaluations)
    assert found is not None and [id(a) for a in found] == [id(own)]
    both = _oracle_nll([(model, 0), (model, 0)], 1, [0, 1], evaluations)  # one model serves both test sets
    assert both is not None and [id(a) for a in both] == [id(other), id(own)]
    copy_model = Learner.from_config(config, tasks[0].train.patches.shape[-1]).flow(0)
    assert _oracle_nll([(copy_model, 0), (model, 1)], 1, [0, 1], evaluations) is None  # scored by another model
    assert _oracle_nll(serving, 1, [0, 1], evaluations) is None  # test set 0 scored by the model's task 0
    stripped = [evaluations[0], dataclasses.replace(evaluations[1], oracle_patches=None)]
    assert _oracle_nll(serving, 1, [1], stripped) is None


def test_the_collapse_rule_reads_the_maps_log_volume_per_channel() -> None:
    assert collapsed(-4.01) and not collapsed(-3.99) and not collapsed(0.5)


def test_collapsed_rows_are_marked_in_every_format() -> None:
    frame = pd.DataFrame(
        {
            "variant": ["A", "A", "B", "B", "B"],
            "run_id": ["a0", "a1", "b0", "b1", "b1"],
            "status": ["ok"] * 5,
            "collapsed": [False, False, True, False, False],
        }
    )
    flags = collapse_flags(frame, {"A": "A", "B (this harness)": "B"})
    assert flags == {"B (this harness)": "1 of 2 runs"}
    spec = TableSpec("x", "1", "t", "c.", ["A", "B (this harness)"], ["I"], flagged=flags)
    spec.cells[("A", "I")] = Cell(mean=0.5, n=2, planned=2)
    text = to_markdown(spec)
    assert f"| B (this harness) {FLAG} |" in text and "| A |" in text and "B (this harness): 1 of 2 runs" in text
    assert r"B (this harness) \textsuperscript{\dag}" in to_latex(spec)
