"""Tables 3-6 (per-category results beside the paper's reported rows) cell by cell against hand computation: which
runs each own row reads, how many it planned, its mean and FM over runs, the reported rows and their mean, the
caption, the columns and which direction is better."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.literature import reported
from analysis.tables import PAPER_FM, per_category_table

NAN = float("nan")
OTHER = {"pixel_ap_routed": 0.3, "pixel_auroc_routed": 0.9, "aupro_routed": 0.7}  # the metrics the table does not show
#: own runs: (variant, seed, status, {category: (I-AUROC, FM (paper))}); a run without categories is one not made
RUNS = [
    ("MoLE-Flow", 0, "ok", {"bottle": (0.90, 0.00), "cable": (0.80, 0.01)}),
    ("MoLE-Flow", 1, "ok", {"bottle": (0.94, 0.00), "cable": (0.70, 0.03)}),
    ("MoLE-Flow", 2, "missing", {}),
    ("knn", 0, "ok", {"bottle": (0.99, 0.20), "cable": (0.60, 0.20)}),
]


def _frame(collapsed: bool = False) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for variant, seed, status, cells in RUNS:
        base = {"study": "main", "variant": variant, "dataset": "synth", "run_id": f"{variant}{seed}", "seed": seed,
                "order": "a", "status": status, "strategy": "frozen_base", **OTHER}  # fmt: skip
        if collapsed:
            base["collapsed"] = variant == "knn"
        if not cells:
            rows.append({**base, "category": None, "image_auroc_routed": NAN, "forgetting_paper_image_auroc": NAN})
        for k, (category, (value, fm)) in enumerate(cells.items()):
            rows.append({**base, "category": category, "image_auroc_routed": value,
                         "forgetting_paper_image_auroc": fm if k == 0 else NAN})  # fmt: skip
    noise = {**rows[0], "image_auroc_routed": 0.0, "forgetting_paper_image_auroc": 1.0}
    rows.append({**noise, "study": "ablation", "run_id": "abl"})  # another study's run of the same variant
    rows.append({**noise, "dataset": "other", "run_id": "oth"})  # another dataset's
    return pd.DataFrame(rows)


def test_own_rows_read_their_study_and_dataset_and_count_missing_runs_as_planned() -> None:
    spec = per_category_table(_frame(), "synth", "image_auroc", "T3_x", "3")
    assert spec.rows == ["MoLE-Flow (this harness)", "knn (this harness)"]
    assert spec.columns == ["bottle", "cable", "mean", PAPER_FM]
    assert spec.better == {"bottle": "max", "cable": "max", "mean": "max", PAPER_FM: "min"}
    assert spec.row_header == "method" and spec.title == "Per-category I-AUROC (synth)"
    bottle = spec.cells[("MoLE-Flow (this harness)", "bottle")]
    assert (bottle.mean, bottle.std, bottle.n, bottle.planned) == (
        pytest.approx(0.92), pytest.approx(np.std([0.90, 0.94], ddof=1)), 2, 3,
    )  # fmt: skip
    cable = spec.cells[("MoLE-Flow (this harness)", "cable")]
    assert (cable.mean, cable.n, cable.planned) == (pytest.approx(0.75), 2, 3)
    mean = spec.cells[("MoLE-Flow (this harness)", "mean")]  # per run the mean over categories, then over runs
    assert (mean.mean, mean.std, mean.n, mean.planned) == (
        pytest.approx(np.mean([0.85, 0.82])), pytest.approx(np.std([0.85, 0.82], ddof=1)), 2, 3,
    )  # fmt: skip
    fm = spec.cells[("MoLE-Flow (this harness)", PAPER_FM)]
    assert (fm.mean, fm.n, fm.planned) == (pytest.approx(0.0), 2, 3)
    knn = spec.cells[("knn (this harness)", "cable")]
    assert (knn.mean, knn.std, knn.n, knn.planned) == (pytest.approx(0.60), None, 1, 1)
    assert spec.cells[("knn (this harness)", PAPER_FM)].mean == pytest.approx(0.20)
    assert spec.caption == (
        "Per-category I-AUROC; FM (paper) = the paper's forgetting, mean over earlier tasks of R[i,i] - R[T-1,i], "
        "for own and reported rows alike. Mean and standard deviation over seeds [0, 1] (n per cell = finished "
        "runs) of each run's mean over its categories, routed; -- = missing."
    )
    # the seeds of the runs that finished with categories (seed 2's cells say "2 of 3" through planned)
    assert spec.flagged == {}
    assert per_category_table(_frame(collapsed=True), "synth", "image_auroc", "T3_x", "3").flagged == {
        "knn (this harness)": "1 of 1 run"
    }
    other = per_category_table(_frame(), "synth", "image_auroc", "T3_x", "3", study="ablation")
    assert other.rows == ["MoLE-Flow (this harness)"] and other.cells[(other.rows[0], "bottle")].mean == 0.0


def test_reported_rows_follow_with_the_papers_values_and_a_mean_of_the_same_categories() -> None:
    spec = per_category_table(_frame(), "synth", "image_auroc", "T3_x", "3", literature_kind="mvtec")
    paper = reported("mvtec", "image_auroc")
    assert spec.rows == ["MoLE-Flow (this harness)", "knn (this harness)"] + [f"{m} (reported)" for m in paper.index]
    for method in paper.index:
        row = f"{method} (reported)"
        values = paper.loc[method]
        for category in ("bottle", "cable"):
            cell = spec.cells.get((row, category))
            if np.isfinite(values[category]):
                assert cell is not None and (cell.mean, cell.n, cell.planned) == (values[category], 1, 0)
            else:
                assert cell is None
        same = [values["bottle"], values["cable"]]  # two of the paper's fifteen: the mean of those two
        mean = spec.cells.get((row, "mean"))
        assert (mean.mean if mean else None) == (pytest.approx(np.mean(same)) if np.all(np.isfinite(same)) else None)
        fm = spec.cells.get((row, PAPER_FM))
        assert (fm.mean if fm else None) == (values["FM"] if np.isfinite(values["FM"]) else None)
        assert all(c.n == 1 for c in (mean, fm) if c is not None)  # one reported number each
    assert spec.caption.startswith("Per-category I-AUROC; FM (paper) = the paper's forgetting")
    assert spec.caption.endswith(
        " Rows marked reported are the values the MoLE-Flow paper reports (Table 3) on the real mvtec data with "
        "pretrained weights: cited, not reproduced here. Their mean is the paper's average when the table has all of "
        "the paper's categories, else the mean of the same categories (missing if one is not reported)."
    )


def test_with_every_paper_category_the_reported_mean_is_the_papers_average() -> None:
    paper = reported("mvtec", "image_auroc")
    categories = [c for c in paper.columns if c not in ("avg", "FM")]
    rows = [
        {"study": "main", "variant": "MoLE-Flow", "dataset": "mvtec", "run_id": "r0", "seed": 0, "order": "a",
         "status": "ok", "strategy": "frozen_base", "category": c, "image_auroc_routed": 0.5,
         "forgetting_paper_image_auroc": 0.0, **OTHER}
        for c in categories
    ]  # fmt: skip
    spec = per_category_table(pd.DataFrame(rows), "mvtec", "image_auroc", "T3", "3", literature_kind="mvtec")
    for method in paper.index:
        average = paper.loc[method, "avg"]
        cell = spec.cells.get((f"{method} (reported)", "mean"))
        if np.isfinite(average):
            assert (
                cell is not None and cell.n == 1 and cell.mean == average
            )  # printed, not recomputed: a row whose average disagrees keeps the paper's
    # categories the paper does not have: nothing to compare with, no reported row
    none = per_category_table(_frame(), "synth", "image_auroc", "T3_x", "3", literature_kind="visa")
    assert (
        none.rows == ["MoLE-Flow (this harness)", "knn (this harness)"] and "Rows marked reported" not in none.caption
    )


def test_only_real_dataset_copies_get_the_papers_reported_rows() -> None:
    from analysis.tables import literature_kinds

    plan = {"datasets": {"synth": {"kind": "mvtec", "generate": {"seed": 0}}, "copy": {"kind": "visa"}}}
    assert literature_kinds(plan) == {"synth": None, "copy": "visa"}  # a generated tree has no literature
    assert literature_kinds({"datasets": {"real": {"kind": "mvtec", "generate": None}}}) == {"real": "mvtec"}
    assert literature_kinds(None) == {} and literature_kinds({"seeds": [0]}) == {}
