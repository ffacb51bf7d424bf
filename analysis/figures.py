"""The paper's figures from the runs (seaborn/matplotlib; PNG and PDF under ``results/figures/``).

Per dataset, from the finished runs (``status == ok``) of the study that feeds each:

* ``accuracy_matrix_<ds>``: main study, the routed accuracy matrix ``R[j, i]`` of every
  metric, mean over seeds of the runs sharing the first run's task order; untrained
  cells masked;
* ``sensitivity_<ds>``: sensitivity study, P-AP and I-AUROC against each swept value,
  mean +- std over seeds (the default marked);
* ``per_category_<ds>``: main study, I-AUROC per category, mean +- std over seeds,
  beside the paper's reported rows for real MVTec AD / VisA (cited, not reproduced);
* ``qualitative_<ds>``: main study, lowest seed, the first saved sample of every
  category (image, anomaly-map overlay, ground truth);
* ``routing_confusion_<ds>``: main study, the final routing confusion summed over seeds,
  as row-normalised shares;
* ``forgetting_over_tasks_<ds>``: strategies study, FM (I-AUROC) after each task,
  mean +- std over seeds, one line per strategy.

Files are written atomically and carry no timestamps, so regenerating gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis import sweeps  # noqa: E402
from analysis.literature import reported  # noqa: E402
from analysis.table_frames import METRIC_LABELS, main_method, run_level  # noqa: E402
from analysis.tables import literature_kinds  # noqa: E402
from moleflow.continual.summary_file import read_summary  # noqa: E402
from moleflow.heatmaps import accuracy_heatmaps, as_matrix  # noqa: E402
from moleflow.io import atomic_path  # noqa: E402
from moleflow.metrics.continual import forgetting_max  # noqa: E402

Summaries = dict[str, dict[str, Any]]


def _save(fig: plt.Figure, folder: Path, stem: str) -> list[str]:
    files = []
    for suffix, extra in (
        (".png", {"dpi": 120, "metadata": {"Software": None}}),
        (".pdf", {"metadata": {"CreationDate": None, "Creator": None, "Producer": None}}),
    ):
        with atomic_path(folder / f"{stem}{suffix}", suffix=suffix) as tmp:
            fig.savefig(tmp, format=suffix[1:], bbox_inches="tight", **extra)
        files.append(f"{stem}{suffix}")
    plt.close(fig)
    return files


def _label(ax: plt.Axes, title: str, xlabel: str, ylabel: str, ticks: int = 7) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=ticks)


def _ok_runs(runs: pd.DataFrame, study: str, dataset: str) -> pd.DataFrame:
    if study == "main":  # MoLE-Flow itself, not the main study's reference rows
        runs = main_method(runs)
    return runs[(runs["study"] == study) & (runs["dataset"] == dataset) & (runs["status"] == "ok")]


def accuracy_matrices(runs: pd.DataFrame, summaries: Summaries, dataset: str) -> plt.Figure | None:
    chosen = _ok_runs(runs, "main", dataset).sort_values("seed")
    loaded = [summaries[r] for r in chosen["run_id"] if r in summaries]
    if not loaded:
        return None
    tasks = loaded[0]["tasks"]
    same = [s for s in loaded if s["tasks"] == tasks]
    means = {
        label: np.mean([as_matrix(s["accuracy_matrix"][metric]) for s in same], axis=0)
        for metric, label in METRIC_LABELS.items()
    }
    return accuracy_heatmaps(
        means, tasks, f"Accuracy matrices, routed, MoLE-Flow ({dataset}; mean over {len(same)} seed(s))"
    )


def sensitivity_curves(runs: pd.DataFrame, dataset: str) -> plt.Figure | None:
    frames = sweeps.sweep_frames(runs, dataset)
    if not frames:
        return None
    fig, axes = plt.subplots(1, len(frames), figsize=(3.2 * len(frames), 3.0), squeeze=False)
    for ax, (sweep, frame) in zip(axes[0], frames.items()):
        ok = frame[frame["status"] == "ok"]
        order = sweeps.ordered_values(frame)
        x = np.arange(len(order))
        for column, label, marker in (("pixel_ap_routed", "P-AP", "o"), ("image_auroc_routed", "I-AUROC", "s")):
            stats = ok.groupby("value")[column].agg(["mean", "std"]).reindex(order)
            ax.errorbar(x, stats["mean"], yerr=stats["std"].fillna(0), marker=marker, capsize=3, label=label)
        ax.set_xticks(x, [v.replace(" (default)", "*") for v in order], fontsize=7)
        ax.set_title(sweep, fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("mean +- std over seeds", fontsize=8)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Sensitivity ({dataset}; * = default)", fontsize=9)
    fig.tight_layout()
    return fig


def per_category_bars(frame: pd.DataFrame, dataset: str, kind: str | None) -> plt.Figure | None:
    sub = frame[(frame["study"] == "main") & (frame["dataset"] == dataset) & (frame["status"] == "ok")]
    if sub.empty:
        return None
    bars = sub[["category", "image_auroc_routed"]].rename(columns={"image_auroc_routed": "I-AUROC"})
    bars["method"] = sub["variant"] + " (this harness)"
    literature = reported(kind, "image_auroc") if kind else pd.DataFrame()
    categories = sorted(set(sub["category"]))
    if not literature.empty:
        shown = literature[[c for c in categories if c in literature.columns]]
        shown = shown[shown.index.isin(["MoLE-Flow", "CADIC", "ReplayCAD", "UCAD", "Joint_PatchCore"])]
        long = shown.reset_index().melt(id_vars="method", var_name="category", value_name="I-AUROC").dropna()
        long["method"] = long["method"] + " (reported)"
        bars = pd.concat([bars, long], ignore_index=True)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(categories) + 2), 3.4))
    sns.barplot(bars, x="category", y="I-AUROC", hue="method", order=categories, errorbar="sd", capsize=0.1, ax=ax)
    ax.set_ylim(0, 1.02)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.legend(fontsize=6, loc="lower left")
    ax.set_title(f"Per-category I-AUROC ({dataset}); bars: mean, whiskers: std over seeds", fontsize=9)
    fig.tight_layout()
    return fig


def qualitative_grid(runs: pd.DataFrame, results: Path, dataset: str) -> plt.Figure | None:
    chosen = _ok_runs(runs, "main", dataset).sort_values("seed")
    if chosen.empty:
        return None
    folder = results / "runs" / chosen["run_id"].iloc[0] / "samples"
    samples = sorted(folder.glob("*.png")) if folder.is_dir() else []
    firsts: dict[str, Path] = {}
    for path in samples:
        firsts.setdefault(path.stem.rsplit("_", 1)[0], path)
    if not firsts:
        return None
    fig, axes = plt.subplots(len(firsts), 1, figsize=(7.5, 2.6 * len(firsts)), squeeze=False)
    for ax, path in zip(axes[:, 0], firsts.values()):
        ax.imshow(plt.imread(path))
        ax.set_axis_off()
    fig.suptitle(f"Anomaly maps ({dataset}, seed {int(chosen['seed'].iloc[0])}): image, map, ground truth", fontsize=9)
    fig.tight_layout()
    return fig


def routing_confusion(runs: pd.DataFrame, summaries: Summaries, dataset: str) -> plt.Figure | None:
    chosen = _ok_runs(runs, "main", dataset)
    loaded = [summaries[r] for r in chosen["run_id"] if r in summaries and summaries[r].get("routing_confusion")]
    if not loaded:
        return None
    tasks = loaded[0]["tasks"]
    same = [s for s in loaded if s["tasks"] == tasks]
    total = np.sum([np.asarray(s["routing_confusion"], dtype=float) for s in same], axis=0)
    shares = total / np.maximum(total.sum(axis=1, keepdims=True), 1)
    with sns.axes_style("white"):
        fig, ax = plt.subplots(figsize=(0.5 * len(tasks) + 2.5, 0.5 * len(tasks) + 2))
    sns.heatmap(
        shares,
        vmin=0,
        vmax=1,
        cmap="Blues",
        annot=len(tasks) <= 12,
        fmt=".2f",
        square=True,
        ax=ax,
        xticklabels=tasks,
        yticklabels=tasks,
        annot_kws={"fontsize": 6},
    )
    _label(
        ax,
        f"Routing confusion ({dataset}; {int(total.sum())} test images, {len(same)} seed(s))",
        "routed to",
        "true task",
    )
    fig.tight_layout()
    return fig


def forgetting_over_tasks(runs: pd.DataFrame, summaries: Summaries, dataset: str) -> plt.Figure | None:
    chosen = _ok_runs(runs, "strategies", dataset)
    records = []
    for _, row in chosen.iterrows():
        summary = summaries.get(row["run_id"])
        if summary is None:
            continue
        R = as_matrix(summary["accuracy_matrix"]["image_auroc"])
        for j in range(1, R.shape[0]):
            records.append(
                {"strategy": row["variant"], "tasks learned": j + 1, "FM I-AUROC": forgetting_max(R[: j + 1, : j + 1])}
            )
    if not records:
        return None
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    sns.lineplot(
        pd.DataFrame(records), x="tasks learned", y="FM I-AUROC", hue="strategy", marker="o", errorbar="sd", ax=ax
    )
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title(f"Forgetting over tasks ({dataset}; FM of Chaudhry et al., mean +- std over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _summaries(results: Path, run_ids: list[str]) -> Summaries:
    out = {}
    for run_id in run_ids:
        path = results / "runs" / run_id / "summary.json"
        if path.is_file():
            out[run_id] = read_summary(path)
    return out


def build_all(
    frame: pd.DataFrame, results: str | Path, plan: dict[str, Any] | None = None, loaded: dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """Draw every figure the runs support; return index rows ``id``, ``title``, ``files``.

    ``loaded``: the summaries already read (run id -> summary or None); read from ``results`` if not given.
    """
    results = Path(results)
    folder = results / "figures"
    runs = run_level(frame[frame["status"].notna()])
    ok = sorted(set(runs[runs["status"] == "ok"]["run_id"]))
    summaries = _summaries(results, ok) if loaded is None else {r: loaded[r] for r in ok if loaded.get(r)}
    kinds = literature_kinds(plan)
    sns.set_theme(style="whitegrid", context="paper")
    index = []
    for dataset in dict.fromkeys(runs["dataset"]):
        makers: dict[str, tuple[str, Callable[[], plt.Figure | None]]] = {
            "accuracy_matrix": (
                "Accuracy matrices",
                partial(accuracy_matrices, runs, summaries, dataset),
            ),
            "sensitivity": ("Sensitivity curves", partial(sensitivity_curves, runs, dataset)),
            "per_category": (
                "Per-category I-AUROC",
                partial(per_category_bars, frame, dataset, kinds.get(dataset)),
            ),
            "qualitative": (
                "Qualitative anomaly maps",
                partial(qualitative_grid, runs, results, dataset),
            ),
            "routing_confusion": (
                "Routing confusion",
                partial(routing_confusion, runs, summaries, dataset),
            ),
            "forgetting_over_tasks": (
                "Forgetting over tasks",
                partial(forgetting_over_tasks, runs, summaries, dataset),
            ),
        }
        for name, (title, make) in makers.items():
            fig = make()
            if fig is not None:
                stem = f"{name}_{dataset}"
                index.append({"id": stem, "title": f"{title} ({dataset})", "files": " ".join(_save(fig, folder, stem))})
    return index
