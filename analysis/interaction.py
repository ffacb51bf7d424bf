"""Table 8, the interaction analysis: is a component's benefit tied to the frozen base?

Variants of the ``interaction`` study (and of ``interaction_<name>`` studies, another design of the same
analysis: ``interaction_authors`` is the authors' one) are named ``COMPONENT|BASE|LEVEL`` (``WA|frozen|on``);
per component and response the blocked two-way analysis (:mod:`analysis.stats`, :mod:`analysis.blocked`), the
simple effects in each base arm, and the verdict on the Holm-adjusted interaction p in the paper's direction.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.blocked import FROZEN, design_frame
from analysis.render import Cell, TableSpec, ordered
from analysis.stats import GENERIC_MARGIN, blocked_anova, holm
from moleflow.errors import MoleflowError

RESPONSES = {
    "pixel_ap_routed": "P-AP",
    "image_auroc_routed": "I-AUROC",
    "pixel_ap_just_trained": "P-AP just trained",
    "image_auroc_just_trained": "I-AUROC just trained",
}


def _interval(low: float, high: float, digits: int = 3) -> str:
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]" if np.isfinite(low) else "--"


def interaction_table(runs: pd.DataFrame, dataset: str, alpha: float = 0.05, study: str = "interaction") -> TableSpec:
    """Table 8 of ``study``: the blocked two-way analysis per component and response (variants ``COMPONENT|BASE|on/off``)."""
    sub = runs[(runs["study"] == study) & (runs["dataset"] == dataset)].copy()
    malformed = [v for v in ordered(sub["variant"]) if len(str(v).split("|")) != 3]
    if malformed:
        raise MoleflowError(
            f"studies.{study}: variant {malformed[0]!r} is not named COMPONENT|BASE|LEVEL (e.g. WA|frozen|on)"
        )
    names = ordered(sub["variant"].str.split("|").str[0])
    # final routed metrics, and each task right after its own training (the trainable arm's effect before forgetting)
    results = []
    for name in names:
        rows = sub[sub["variant"].str.startswith(f"{name}|")]
        for column, label in RESPONSES.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = blocked_anova(design_frame(rows, column), name, column)
            for w in caught:
                warnings.warn(str(w.message), stacklevel=2)
            results.append((name, label, result))
    adjusted: dict[str, list[float]] = {}
    equivalent: dict[str, list[float]] = {}
    for label in RESPONSES.values():
        adjusted[label] = holm([r.p_interaction for _, lab, r in results if lab == label])
        equivalent[label] = holm([r.p_equivalent for _, lab, r in results if lab == label])
    arms = sorted({v.split("|")[1] for v in sub["variant"]}, key=lambda b: (b != FROZEN, b))
    numbers = ["F base", "p base", "F comp.", "p comp.", "F inter.", "p inter.", "Holm p inter.", "df", "n"]
    contrast = ["Δ inter.", "95% CI inter.", "η²p inter.", "95% CI η²p", f"Holm p equiv. ±{GENERIC_MARGIN:g}"]
    effects = [c for arm in arms for c in (f"Δ comp. {arm}", f"95% CI {arm}")]
    columns = numbers + contrast + effects + ["verdict", "note"]
    rows_out = [f"{name} / {label}" for name, label, _ in results]
    design = "" if study == "interaction" else f", {study.removeprefix('interaction_')}'s design"
    spec = TableSpec(
        f"T8_{study}_{dataset}",
        "8",
        f"Interaction analysis ({dataset}{design})",
        "Per component and response, the 2 x 2 design (base frozen or trainable x component on or off) with "
        "the seeds (x task orders) as blocks: each effect is the mean of its per-block contrast and is tested "
        "against its own variance over the blocks (the repeated-measures two-way ANOVA: F on (1, n - 1) df, "
        "n = blocks with all four cells, df = n - 1). Δ inter.: the interaction contrast, (on - off) with the "
        f"{FROZEN} base minus (on - off) with the trainable one, with its 95% interval; η²p: partial eta squared "
        "of the interaction with its interval (noncentral F). Holm: across the components, per response. "
        "Δ comp.: the component's simple effect (on - off) in each base arm, from that arm's own per-block "
        f"differences. Verdict on the Holm-adjusted p at alpha {alpha}: Integral if the interaction is "
        f"significant and the component helps more with the {FROZEN} base, Opposite if significant the other "
        f"way, Generic only if the interaction contrast is shown to lie within ±{GENERIC_MARGIN:g} (TOST, Holm), "
        "no interaction detected otherwise. The trainable arm is the sequential strategy: its final-metric "
        "effect is measured after forgetting; the 'just trained' responses take each task right after its own "
        "training (the routed accuracy matrix's diagonal R[i,i]), before a later task could change it.",
        rows_out,
        columns,
        row_header="component / response",
        p_columns=("p base", "p comp.", "p inter.", "Holm p inter.", f"Holm p equiv. ±{GENERIC_MARGIN:g}"),
        column_digits={"df": 0, "n": 0},
        # the page holds the interaction's test, its size and the simple effects; the F's, df and η²p are in the CSV
        latex_columns=[
            "p inter.",
            "Holm p inter.",
            "n",
            "Δ inter.",
            "95% CI inter.",
            *(f"Δ comp. {arm}" for arm in arms),
            "verdict",
        ],
    )
    counters = {label: 0 for label in RESPONSES.values()}
    for (_name, label, result), row in zip(results, rows_out):
        k = counters[label]
        counters[label] += 1
        holm_p, holm_equivalent = adjusted[label][k], equivalent[label][k]
        values = [
            result.f_base,
            result.p_base,
            result.f_component,
            result.p_component,
            result.f_interaction,
            result.p_interaction,
            holm_p,
            result.df_residual,
            float(result.n) if result.valid else float("nan"),
            result.interaction.estimate if result.interaction else float("nan"),
            None,
            result.eta2_interaction,
            None,
            holm_equivalent,
        ]
        for column, value in zip(numbers + contrast, values):
            if value is None:
                continue
            paired = column == "Δ inter."  # a per-seed contrast: its n is the seeds (blocks) behind it
            spec.cells[(row, column)] = Cell(mean=value, n=result.n, show_n=paired) if np.isfinite(value) else Cell()
        low, high = result.interaction.interval() if result.interaction else (float("nan"), float("nan"))
        spec.cells[(row, "95% CI inter.")] = Cell(text=_interval(low, high))
        spec.cells[(row, "95% CI η²p")] = Cell(text=_interval(*result.eta2_interval, digits=2).replace("+", ""))
        for arm in arms:
            effect = result.simple.get(arm)
            if effect is not None and np.isfinite(effect.estimate):
                spec.cells[(row, f"Δ comp. {arm}")] = Cell(mean=effect.estimate, n=effect.n, show_n=True)
                spec.cells[(row, f"95% CI {arm}")] = Cell(text=_interval(*effect.interval()))
            else:
                spec.cells[(row, f"Δ comp. {arm}")] = Cell()
                spec.cells[(row, f"95% CI {arm}")] = Cell(text="--")
        spec.cells[(row, "verdict")] = Cell(text=result.verdict(holm_p, alpha, holm_equivalent))
        spec.cells[(row, "note")] = Cell(text=result.note or "")
    return spec
