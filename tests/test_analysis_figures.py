"""The figures draw the runs' numbers: bars, curves and matrices read back from the drawn figures equal the runs' means."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from analysis_fixture import CATEGORIES, WORKFLOW, write_results
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from moleflow.planning import WorkflowPlan, plan_runs


def _drawn(fig: Figure | None) -> Figure:
    """A figure the fixture's runs must have drawn."""
    assert fig is not None
    return fig


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's results folder, not analysed (the figures are drawn from the summaries)."""
    return write_results(tmp_path_factory.mktemp("written"))


def _ok_summaries(results: Path, study: str, variant: str) -> list[dict]:
    """The fixture's finished summaries of one (study, variant), read from disk, in seed order."""
    out = []
    for run in sorted(plan_runs(WORKFLOW).values(), key=lambda r: r.seed):
        path = results / "results" / "runs" / run.run_id / "summary.json"
        if (study, variant) in run.memberships and path.is_file():
            summary = json.loads(path.read_text())
            out += [summary] if summary["status"] == "ok" else []
    return out


def _run_mean(summary: dict, metric: str) -> float:
    return float(np.mean([summary["final"][c]["routed"][metric] for c in summary["final"]]))


def test_figures_draw_the_runs_numbers(written: Path) -> None:
    """What each figure draws equals what the summaries on disk hold, computed here by hand."""
    import matplotlib.pyplot as plt

    from analysis import figures
    from analysis.collect import collect
    from analysis.table_frames import run_level

    frame = collect(WorkflowPlan.from_config(WORKFLOW).record(), written / "results")
    runs = run_level(frame)
    loaded = figures._summaries(written / "results", list(runs["run_id"]))
    main = _ok_summaries(written, "main", "MoLE-Flow")
    assert len(main) == 3
    fig = _drawn(figures.accuracy_matrices(runs, loaded, "synth"))
    for ax, (metric, label) in zip(
        fig.axes, {"image_auroc": "I-AUROC", "pixel_auroc": "P-AUROC", "pixel_ap": "P-AP", "aupro": "AUPRO"}.items()
    ):
        assert ax.get_title() == label
        image = ax.images[0].get_array()
        assert image is not None
        drawn = np.ma.filled(image, np.nan).reshape(2, 2)
        expected = np.mean(
            [[[np.nan if v is None else v for v in row] for row in s["accuracy_matrix"][metric]] for s in main], axis=0
        )
        assert np.allclose(drawn, expected, equal_nan=True), metric
    plt.close(fig)
    fig = _drawn(figures.routing_confusion(runs, loaded, "synth"))  # each fixture run routes [[10, 0], [1, 9]]
    shares = fig.axes[0].collections[0].get_array()
    assert shares is not None
    assert np.allclose(np.ma.filled(shares, np.nan).reshape(2, 2), [[1.0, 0.0], [0.1, 0.9]])
    plt.close(fig)
    fig = _drawn(figures.forgetting_over_tasks(runs, loaded, "synth"))
    ys = [np.asarray(line.get_ydata(), dtype=float) for line in fig.axes[0].lines]
    points = sorted(float(y[0]) for y in ys if len(y) == 1)
    assert len(points) == 2  # one point per strategy (two tasks: forgetting after the second)
    forgetting = sorted(
        float(
            np.mean(
                [
                    R[0][0] - R[1][0]
                    for R in (s["accuracy_matrix"]["image_auroc"] for s in _ok_summaries(written, "strategies", v))
                ]
            )
        )
        for v in ("MoLE-Flow", "Sequential")
    )
    assert np.allclose(points, forgetting)
    plt.close(fig)
    fig = _drawn(figures.sensitivity_curves(runs, "synth"))
    ax = next(a for a in fig.axes if a.get_title() == "tail_weight")
    p_ap = next(c for c in ax.containers if c.get_label() == "P-AP")
    assert isinstance(p_ap, ErrorbarContainer)
    means = [
        np.mean([_run_mean(s, "pixel_ap") for s in _ok_summaries(written, "sensitivity", v)])
        for v in ("tail_weight 0.3", "default", "tail_weight 1.0")
    ]
    assert np.allclose(p_ap.lines[0].get_ydata(), means)
    plt.close(fig)
    fig = _drawn(figures.per_category_bars(frame, "synth", "mvtec"))
    labels = fig.axes[0].get_legend_handles_labels()[1]  # seaborn draws one container per hue, in the legend's order
    assert len(labels) == len(fig.axes[0].containers)
    bars = dict(zip(labels, fig.axes[0].containers))
    ours = [p.get_height() for p in bars["MoLE-Flow (this harness)"]]  # one bar per category, in category order
    heights = [
        np.mean([s["final"][category]["routed"]["image_auroc"] for s in main]) for category in sorted(CATEGORIES)
    ]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == sorted(CATEGORIES)
    assert np.allclose(ours, heights)
    plt.close(fig)
