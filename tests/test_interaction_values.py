"""Table 8 (:func:`analysis.interaction.interaction_table`) cell by cell against values by hand.

Two components over four blocks (two seeds x two task orders, so a pairing on the seed alone would merge
blocks) and four responses on different scales (the interaction's p is scale-free, the equivalence test's is
not, so each response's Holm family differs); a component that lost an arm; the names, the columns, the
caption and the refusals.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.blocked import contrasts, design_frame
from analysis.interaction import RESPONSES, interaction_table
from analysis.stats import GENERIC_MARGIN
from moleflow.errors import MoleflowError

BLOCKS = [(0, "alphabetical"), (0, "reversed"), (1, "alphabetical"), (1, "reversed")]
SCALE = {
    "pixel_ap_routed": 1.0,
    "image_auroc_routed": 0.5,
    "pixel_ap_just_trained": 2.0,
    "image_auroc_just_trained": 4.0,
}
CELLS = [("frozen", "on"), ("frozen", "off"), ("trainable", "on"), ("trainable", "off")]
#: per component, the value of each cell per block (before the response's scale)
VALUES = {
    "A": {  # a large interaction in the paper's direction
        ("frozen", "on"): [0.90, 0.93, 0.88, 0.95],
        ("frozen", "off"): [0.70, 0.72, 0.69, 0.74],
        ("trainable", "on"): [0.61, 0.66, 0.60, 0.64],
        ("trainable", "off"): [0.60, 0.63, 0.61, 0.62],
    },
    "B": {  # none to speak of: shown within the margin on the smaller scales only
        ("frozen", "on"): [0.802, 0.810, 0.800, 0.805],
        ("frozen", "off"): [0.799, 0.809, 0.796, 0.803],
        ("trainable", "on"): [0.698, 0.714, 0.691, 0.703],
        ("trainable", "off"): [0.696, 0.711, 0.689, 0.700],
    },
    "D": {  # a large one the other way: the component helps the trainable base
        ("frozen", "on"): [0.80, 0.81, 0.79, 0.82],
        ("frozen", "off"): [0.80, 0.80, 0.80, 0.81],
        ("trainable", "on"): [0.71, 0.72, 0.70, 0.74],
        ("trainable", "off"): [0.60, 0.62, 0.61, 0.63],
    },
}


def _runs(values: dict[str, dict[tuple[str, str], list[float]]], study: str = "interaction") -> pd.DataFrame:
    rows = []
    for name, cells in values.items():
        for (base, level), ys in cells.items():
            for (seed, order), y in zip(BLOCKS, ys):
                rows.append(
                    {
                        "study": study, "dataset": "d", "variant": f"{name}|{base}|{level}", "seed": seed,
                        "order": order, "status": "ok" if np.isfinite(y) else "failed",
                        **{column: y * scale for column, scale in SCALE.items()},
                    }
                )  # fmt: skip
    return pd.DataFrame(rows)


def _t(per_block: np.ndarray) -> tuple[float, float, int]:
    """Mean, standard error and df of a per-block contrast."""
    n = len(per_block)
    return float(per_block.mean()), float(per_block.std(ddof=1) / np.sqrt(n)), n - 1


def _holm(p: list[float]) -> list[float]:
    """Holm by hand: the i-th smallest (from 0) times m - i, never below the one before it, capped at 1."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def _expected() -> dict[str, dict[str, float | str]]:
    """Every numeric cell of every row, computed here from the cell values."""
    raw: dict[tuple[str, str], dict[str, float | str]] = {}
    for name, cells in VALUES.items():
        for column, label in RESPONSES.items():
            a = {cell: np.array(ys) * SCALE[column] for cell, ys in cells.items()}
            on_f, off_f, on_t, off_t = (a[c] for c in CELLS)
            out: dict[str, float | str] = {}
            for key, per_block in (
                ("base", ((on_f + off_f) - (on_t + off_t)) / 2),
                ("comp.", ((on_f - off_f) + (on_t - off_t)) / 2),
                ("inter.", (on_f - off_f) - (on_t - off_t)),
            ):
                mean, se, df = _t(per_block)
                out[f"F {key}"] = (mean / se) ** 2
                out[f"p {key}"] = 2 * sps.t.sf(abs(mean / se), df)
                if key == "inter.":
                    q = sps.t.ppf(0.975, df)
                    out["Δ inter."] = mean
                    out["95% CI inter."] = f"[{mean - q * se:+.3f}, {mean + q * se:+.3f}]"
                    out["η²p inter."] = (mean / se) ** 2 / ((mean / se) ** 2 + df)
                    # TOST: the larger of the two one-sided p's against -margin and +margin
                    out["equiv"] = max(
                        sps.t.sf((mean + GENERIC_MARGIN) / se, df), sps.t.cdf((mean - GENERIC_MARGIN) / se, df)
                    )
            for arm, diff in (("frozen", on_f - off_f), ("trainable", on_t - off_t)):
                mean, se, df = _t(diff)
                q = sps.t.ppf(0.975, df)
                out[f"Δ comp. {arm}"] = mean
                out[f"95% CI {arm}"] = f"[{mean - q * se:+.3f}, {mean + q * se:+.3f}]"
            out["df"], out["n"] = 3.0, 4.0
            raw[(name, label)] = out
    for label in RESPONSES.values():
        names = list(VALUES)
        for key, source in (("Holm p inter.", "p inter."), (f"Holm p equiv. ±{GENERIC_MARGIN:g}", "equiv")):
            adjusted = _holm([float(raw[(n, label)][source]) for n in names])
            for n, p in zip(names, adjusted):
                raw[(n, label)][key] = p
    return {f"{name} / {label}": out for (name, label), out in raw.items()}


def _verdict(cells: dict[str, float | str]) -> str:
    if float(cells["Holm p inter."]) < 0.05:
        return "Integral" if float(cells["Δ inter."]) > 0 else "Opposite"
    return "Generic" if float(cells[f"Holm p equiv. ±{GENERIC_MARGIN:g}"]) < 0.05 else "no interaction detected"


def test_every_cell_of_table8_is_the_hand_computation() -> None:
    spec = interaction_table(_runs(VALUES), "d")
    expected = _expected()
    assert spec.rows == [f"{name} / {label}" for name in VALUES for label in RESPONSES.values()]
    verdicts = set()
    for row, cells in expected.items():
        for column, value in cells.items():
            if column == "equiv":
                continue
            cell = spec.cells[(row, column)]
            if isinstance(value, str):
                assert cell.text == value, (row, column)
            else:
                assert cell.mean == pytest.approx(value, rel=1e-9, abs=1e-15), (row, column)
        # n shown after the paired and simple contrasts only: the blocks (seed x order) behind them
        for column in ("Δ inter.", "Δ comp. frozen", "Δ comp. trainable"):
            assert spec.cells[(row, column)].n == 4 and spec.cells[(row, column)].show_n, (row, column)
        assert not spec.cells[(row, "F inter.")].show_n and not spec.cells[(row, "p inter.")].show_n
        low, high = contrasts(design_frame(_runs(VALUES).pipe(_one, row), _column(row)))["interaction"].eta2_interval()
        assert spec.cells[(row, "95% CI η²p")].text == f"[{low:.2f}, {high:.2f}]"
        verdicts.add(spec.cells[(row, "verdict")].text)
        assert spec.cells[(row, "verdict")].text == _verdict(cells), row
        assert spec.cells[(row, "note")].text == ""
    assert verdicts == {"Integral", "Opposite", "Generic", "no interaction detected"}  # the fixture reaches each


def _one(runs: pd.DataFrame, row: str) -> pd.DataFrame:
    return runs[runs["variant"].str.startswith(row.split(" / ")[0] + "|")]


def _column(row: str) -> str:
    return {label: column for column, label in RESPONSES.items()}[row.split(" / ")[1]]


def test_table8_columns_and_what_the_latex_page_keeps() -> None:
    spec = interaction_table(_runs(VALUES), "d")
    margin = f"Holm p equiv. ±{GENERIC_MARGIN:g}"
    assert spec.columns == [
        "F base", "p base", "F comp.", "p comp.", "F inter.", "p inter.", "Holm p inter.", "df", "n",
        "Δ inter.", "95% CI inter.", "η²p inter.", "95% CI η²p", margin,
        "Δ comp. frozen", "95% CI frozen", "Δ comp. trainable", "95% CI trainable", "verdict", "note",
    ]  # fmt: skip
    assert spec.p_columns == ("p base", "p comp.", "p inter.", "Holm p inter.", margin)
    assert spec.column_digits == {"df": 0, "n": 0}
    assert spec.latex_columns == [
        "p inter.", "Holm p inter.", "n", "Δ inter.", "95% CI inter.", "Δ comp. frozen", "Δ comp. trainable", "verdict"
    ]  # fmt: skip
    assert (spec.table_id, spec.paper_table, spec.title) == ("T8_interaction_d", "8", "Interaction analysis (d)")
    assert spec.row_header == "component / response"


def test_another_design_is_named_in_the_title_and_its_arms_keep_their_names() -> None:
    """An ``interaction_<name>`` study says whose design it is; a trainable arm named otherwise (sorting before
    ``frozen``) still comes after the frozen one and keeps its columns, on the LaTeX page too."""
    renamed = {
        name: {(b.replace("trainable", "adapted"), c): ys for (b, c), ys in v.items()} for name, v in VALUES.items()
    }
    spec = interaction_table(_runs(renamed, "interaction_authors"), "d", study="interaction_authors")
    assert (spec.table_id, spec.title) == ("T8_interaction_authors_d", "Interaction analysis (d, authors's design)")
    assert spec.columns[-6:] == [
        "Δ comp. frozen",
        "95% CI frozen",
        "Δ comp. adapted",
        "95% CI adapted",
        "verdict",
        "note",
    ]
    assert spec.latex_columns is not None and spec.latex_columns[-3:] == [
        "Δ comp. frozen",
        "Δ comp. adapted",
        "verdict",
    ]
    expected = _expected()
    row = "A / P-AP"
    assert spec.cells[(row, "Δ comp. adapted")].mean == pytest.approx(float(expected[row]["Δ comp. trainable"]))
    assert spec.cells[(row, "Δ inter.")].mean == pytest.approx(float(expected[row]["Δ inter."]))
    assert interaction_table(_runs(VALUES, "interaction_authors"), "d").rows == []  # another study's runs: none


def test_a_component_that_lost_an_arm_is_untested_and_its_warning_points_at_the_caller() -> None:
    lost = {"C": {**VALUES["A"], ("trainable", "off"): [float("nan")] * 4}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = interaction_table(_runs(lost), "d")
    messages = [str(w.message) for w in caught]
    assert [m.split(":")[0] for m in messages] == [f"ANOVA C / {column}" for column in RESPONSES]
    origins = {w.filename for w in caught}
    assert not any(f.endswith(("stats.py", "blocked.py")) for f in origins)  # not where the analysis found it
    if "MUTANT_UNDER_TEST" not in os.environ:  # (mutmut's trampoline puts a frame between the test and the table)
        assert origins == {__file__}  # stacklevel 2: the line that asked for the table
    row = "C / I-AUROC"
    assert spec.cells[(row, "verdict")].text == "untested"
    note = spec.cells[(row, "note")].text
    assert note and note in messages[1]
    for column in ("95% CI inter.", "95% CI η²p", "95% CI trainable"):
        assert spec.cells[(row, column)].text == "--", column
    for column in ("Δ comp. trainable", "Δ inter.", "F inter.", "p inter.", "Holm p inter.", "n", "df"):
        assert spec.cells[(row, column)].missing, column  # nothing tested: no number, not even NaN
    frozen = np.array(VALUES["A"][("frozen", "on")]) - np.array(VALUES["A"][("frozen", "off")])
    mean, se, df = _t(frozen * SCALE["image_auroc_routed"])
    q = sps.t.ppf(0.975, df)
    assert spec.cells[(row, "Δ comp. frozen")].mean == pytest.approx(mean)
    assert spec.cells[(row, "95% CI frozen")].text == f"[{mean - q * se:+.3f}, {mean + q * se:+.3f}]"


def test_table8_caption_says_what_the_cells_are() -> None:
    caption = interaction_table(_runs(VALUES), "d", alpha=0.01).caption
    assert caption == (
        "Per component and response, the 2 x 2 design (base frozen or trainable x component on or off) with "
        "the seeds (x task orders) as blocks: each effect is the mean of its per-block contrast and is tested "
        "against its own variance over the blocks (the repeated-measures two-way ANOVA: F on (1, n - 1) df, "
        "n = blocks with all four cells, df = n - 1). Δ inter.: the interaction contrast, (on - off) with the "
        "frozen base minus (on - off) with the trainable one, with its 95% interval; η²p: partial eta squared "
        "of the interaction with its interval (noncentral F). Holm: across the components, per response. "
        "Δ comp.: the component's simple effect (on - off) in each base arm, from that arm's own per-block "
        "differences. Verdict on the Holm-adjusted p at alpha 0.01: Integral if the interaction is "
        "significant and the component helps more with the frozen base, Opposite if significant the other "
        f"way, Generic only if the interaction contrast is shown to lie within ±{GENERIC_MARGIN:g} (TOST, Holm), "
        "no interaction detected otherwise. The trainable arm is the sequential strategy: its final-metric "
        "effect is measured after forgetting; the 'just trained' responses take each task right after its own "
        "training (the routed accuracy matrix's diagonal R[i,i]), before a later task could change it."
    )


def test_a_variant_not_named_component_base_level_is_refused_by_name() -> None:
    runs = _runs(VALUES)
    runs.loc[runs["variant"] == "B|frozen|on", "variant"] = "B|frozen"
    runs.loc[runs["variant"] == "A|trainable|off", "variant"] = "A-trainable-off"
    with pytest.raises(MoleflowError) as error:
        interaction_table(runs, "d")
    assert str(error.value) == (
        "studies.interaction: variant 'A-trainable-off' is not named COMPONENT|BASE|LEVEL (e.g. WA|frozen|on)"
    )
