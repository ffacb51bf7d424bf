"""The analysis' small statistics against values by hand: t intervals, paired differences and the Δ cells at
the edges (no pair, one pair, two), and a variant table's directions, digits and caption."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis.render import Cell
from analysis.stats import delta_cell, paired_difference, t_interval
from analysis.tables import variant_table


def test_t_interval_is_scipys_and_nan_below_two_values() -> None:
    values = np.array([0.81, 0.84, 0.79, 0.88])
    mean, sem = float(np.mean(values)), scipy_stats.sem(values)
    assert t_interval(values) == pytest.approx(scipy_stats.t.interval(0.95, 3, loc=mean, scale=sem))  # default 95 %
    assert t_interval(values, 0.5) == pytest.approx(scipy_stats.t.interval(0.5, 3, loc=mean, scale=sem))
    for few in (np.array([0.8]), np.array([])):
        low, high = t_interval(few)
        assert math.isnan(low) and math.isnan(high)


def _series(values: dict[tuple[int, str], float]) -> pd.Series:
    return pd.Series(values, dtype=float).rename_axis(["seed", "order"])


def test_paired_difference_pairs_on_seed_and_order_at_any_level() -> None:
    a = _series({(0, "x"): 0.9, (1, "x"): 0.8, (2, "x"): 0.7, (3, "x"): float("nan")})
    b = _series({(0, "x"): 0.5, (1, "x"): 0.6, (2, "y"): 0.1, (3, "x"): 0.2})
    out = paired_difference(a, b, level=0.5)  # pairs: seeds 0 and 1 (seed 2's orders differ, seed 3 is NaN)
    assert (out.n, out.mean) == (2, pytest.approx(0.3))
    assert (out.low, out.high) == pytest.approx(t_interval(np.array([0.4, 0.2]), 0.5))
    one = paired_difference(a, _series({(1, "x"): 0.5}))
    assert (one.n, one.mean) == (1, pytest.approx(0.3)) and math.isnan(one.low)
    none = paired_difference(a, _series({(9, "x"): 0.5}))
    assert none.n == 0 and math.isnan(none.mean)


def _runs(values: list[float], status: str = "ok") -> pd.DataFrame:
    return pd.DataFrame(
        {"seed": range(len(values)), "order": "x", "status": status, "auroc": values}, index=range(len(values))
    )


def test_delta_cell_says_n_and_gives_an_interval_from_two_pairs() -> None:
    reference = _runs([0.5, 0.6, 0.7])
    assert delta_cell(_runs([]), reference, "auroc") == Cell()  # no pair: an empty cell
    one = delta_cell(_runs([0.9]), reference, "auroc")
    assert (one.mean, one.n, one.interval, one.show_n) == (pytest.approx(0.4), 1, None, True)
    two = delta_cell(_runs([0.9, 0.9]), reference, "auroc")
    assert two.n == 2 and two.show_n is True and two.interval == pytest.approx(t_interval(np.array([0.4, 0.3])))
    failed = delta_cell(_runs([0.9, 0.9], status="diverged"), reference, "auroc")
    assert failed == Cell()  # only finished runs pair


def test_variant_table_bolds_the_lower_forgetting_rounds_integers_and_captions_its_title() -> None:
    rows = []
    for variant, auroc, fm, params in (("MoLE-Flow", 0.9, 0.02, 1000), ("w/o LoRA", 0.8, 0.05, 500)):
        for seed in (0, 1):
            rows.append(
                {
                    "study": "ablation",
                    "dataset": "synth",
                    "variant": variant,
                    "seed": seed,
                    "order": "x",
                    "status": "ok",
                    "auroc": auroc + seed / 100,
                    "forgetting_fm": fm,
                    "params_per_task": params,
                }
            )
    spec = variant_table(
        pd.DataFrame(rows),
        "ablation",
        "synth",
        "T7_ablation",
        "7",
        "Component ablations",
        {"auroc": "I-AUROC", "forgetting_fm": "FM", "params_per_task": "Params"},
        integer_columns=("Params",),
    )
    assert spec.better == {"I-AUROC": "max", "FM": "min", "Params": "min"}
    assert spec.column_digits == {"Params": 0}
    assert spec.caption.startswith("Component ablations. Mean and standard deviation over seeds [0, 1]")
    assert spec.cells[("w/o LoRA", "FM")].mean == pytest.approx(0.05)


def test_objective_table_rows_columns_directions_and_caption() -> None:
    from analysis.tables import objective_table

    rows = []
    for variant, sep, volume in (("excluded|1x", 2.5, -1.0), ("included|4x", 3.5, -6.0)):
        for seed in (0, 1):
            rows.append(
                {
                    "study": "objective",
                    "dataset": "synth",
                    "variant": variant,
                    "seed": seed,
                    "order": "x",
                    "status": "ok",
                    "image_auroc_routed": 0.8,
                    "pixel_auroc_routed": 0.9,
                    "pixel_ap_routed": 0.3,
                    "collapse_separation": sep + seed,
                    "collapse_input_logdet": volume,
                }
            )
    spec = objective_table(pd.DataFrame(rows), "synth")
    assert spec.table_id == "objective_synth" and spec.rows == ["excluded|1x", "included|4x"]
    assert spec.columns == ["I-AUROC", "P-AUROC", "P-AP", "separation", "log-volume / patch"]
    assert spec.better == {"I-AUROC": "max", "P-AUROC": "max", "P-AP": "max", "separation": "max"}  # volume: no bold
    assert spec.column_digits == {"separation": 2, "log-volume / patch": 1}
    assert spec.title.startswith("The flow's objective: the input maps' Jacobian excluded (the paper's) or included")
    assert spec.title.endswith("at 1x, 2x and 4x the schedule (synth)")
    assert spec.paper_table == "objective" and spec.caption.startswith(spec.title.removesuffix(" (synth)") + ".")
    assert spec.caption.endswith(
        " Separation: defect patches' mean NLL minus normal test patches', in units of the normal patches' SD, "
        "under the run's own objective (input_collapse in each task's record). Log-volume / patch: the log-determinant "
        "per patch of the trainable maps in front of the flow (whitening affine and mixer), which the bounded "
        "objective adds to log p and the paper's leaves out. Claims O1 and O2 test 4x against 1x within each objective."
    )  # what a reader of Table "objective" is told its two diagnostic columns are
    assert spec.cells[("included|4x", "separation")].mean == pytest.approx(4.0)
    assert spec.cells[("included|4x", "log-volume / patch")].mean == pytest.approx(-6.0)


def _ablation(values: dict[str, list[float]], **more: float) -> pd.DataFrame:
    """An ablation study's runs: per variant its I-AUROC by seed (and further columns, the same in every run)."""
    return pd.DataFrame(
        [
            {
                "study": "ablation",
                "dataset": "synth",
                "variant": variant,
                "seed": seed,
                "order": "x",
                "status": "ok",
                "auroc": value,
                "pixel": 2 * value,
                **more,
            }  # fmt: skip
            for variant, by_seed in values.items()
            for seed, value in enumerate(by_seed)
        ]
    )


def test_variant_table_deltas_pair_each_row_with_the_first_by_seed() -> None:
    values = {"MoLE-Flow": [0.90, 0.80, 0.70], "w/o LoRA": [0.80, 0.75, 0.50], "w/o DIA": [0.95, 0.80]}
    columns = {"auroc": "I-AUROC", "pixel": "P-AUROC", "memory_mb": "memory"}
    args = ("ablation", "synth", "T7", "7", "Ablations", columns)
    spec = variant_table(_ablation(values, memory_mb=1.0), *args, delta_of="auroc")
    assert spec.columns == ["I-AUROC", "P-AUROC", "memory", "Δ I-AUROC"]
    assert spec.better["memory"] == "min"
    assert ("MoLE-Flow", "Δ I-AUROC") not in spec.cells  # the reference row has no difference to itself
    lora = spec.cells[("w/o LoRA", "Δ I-AUROC")]
    assert (lora.mean, lora.n) == (pytest.approx(np.mean([-0.10, -0.05, -0.20])), 3)
    assert lora.interval == pytest.approx(t_interval(np.array([-0.10, -0.05, -0.20])))
    dia = spec.cells[("w/o DIA", "Δ I-AUROC")]  # seed 2 not run: two pairs
    assert (dia.mean, dia.n) == (pytest.approx(0.025), 2)
    assert spec.caption.startswith("Ablations. Mean and standard deviation over seeds [0, 1, 2]")
    assert spec.caption.endswith(
        " Δ: paired by seed against MoLE-Flow over the seeds both finished (n = pairs), with a 95% t interval of "
        "the mean difference."
    )
    both = variant_table(
        _ablation(values), *args[:5], {"auroc": "I-AUROC", "pixel": "P-AUROC"}, delta_of=("auroc", "pixel")
    )
    assert both.columns == ["I-AUROC", "P-AUROC", "Δ I-AUROC", "Δ P-AUROC"]
    assert both.cells[("w/o LoRA", "Δ P-AUROC")].mean == pytest.approx(2 * np.mean([-0.10, -0.05, -0.20]))
    plain = variant_table(_ablation(values), *args[:5], {"auroc": "I-AUROC"})
    assert plain.columns == ["I-AUROC"] and "Δ" not in plain.caption
    empty = variant_table(_ablation(values), "sweep", *args[1:], delta_of="auroc")  # a study with no runs
    assert empty.rows == [] and empty.columns == ["I-AUROC", "P-AUROC", "memory"] and "Δ" not in empty.caption


def test_main_runs_are_each_datasets_lowest_seed_run_of_the_method() -> None:
    from analysis.tables import main_runs

    rows = [
        ("main", "zeta", "MoLE-Flow", 0, "z0"), ("main", "zeta", "MoLE-Flow", 1, "z1"),
        ("main", "alpha", "MoLE-Flow", 2, "a2"), ("main", "alpha", "MoLE-Flow", 1, "a1b"),
        ("main", "alpha", "MoLE-Flow", 1, "a1a"), ("main", "alpha", "knn", 0, "k0"),
        ("pilot", "alpha", "MoLE-Flow", 0, "p0"),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["study", "dataset", "variant", "seed", "run_id"])
    found = main_runs(frame)
    assert list(found.items()) == [("zeta", "z0"), ("alpha", "a1a")]  # datasets in the order of their lowest seed
    assert main_runs(frame, "pilot") == {"alpha": "p0"}
