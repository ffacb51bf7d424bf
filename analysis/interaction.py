"""Table 8, the interaction analysis: is a component's benefit tied to the frozen base?

Variants of the ``interaction`` study (and of ``interaction_<name>`` studies, another design of the same
analysis: ``interaction_authors`` is the authors' one) are named ``COMPONENT|BASE|LEVEL`` (``WA|frozen|on``);
per component and response a two-way ANOVA (:mod:`analysis.stats`), the simple effects in
each base arm, and the verdict on the Holm-adjusted interaction p in the paper's direction.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.render import Cell, TableSpec, ordered
from analysis.stats import FROZEN, holm, two_way_anova
from moleflow.errors import MoleflowError


def interaction_table(runs: pd.DataFrame, dataset: str, alpha: float = 0.05, study: str = "interaction") -> TableSpec:
    """Table 8 of ``study``: two-way ANOVA per component and response (variants named ``COMPONENT|BASE|on/off``)."""
    sub = runs[(runs["study"] == study) & (runs["dataset"] == dataset)].copy()
    malformed = [v for v in ordered(sub["variant"]) if len(str(v).split("|")) != 3]
    if malformed:
        raise MoleflowError(f"studies.{study}: variant {malformed[0]!r} is not named COMPONENT|BASE|LEVEL (e.g. WA|frozen|on)")
    parts = sub["variant"].str.split("|", expand=True)
    sub["component_name"], sub["base"], sub["component"] = parts[0], parts[1], parts[2]
    # final routed metrics, and each task right after its own training (the trainable arm's effect before forgetting)
    responses = {"pixel_ap_routed": "P-AP", "image_auroc_routed": "I-AUROC",
                 "pixel_ap_just_trained": "P-AP just trained", "image_auroc_just_trained": "I-AUROC just trained"}
    results = []
    for name in ordered(sub["component_name"]):
        for column, label in responses.items():
            data = sub[sub["component_name"] == name].copy()
            data.loc[data["status"] != "ok", column] = np.nan
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = two_way_anova(data, name, column)
            for w in caught:
                warnings.warn(str(w.message), stacklevel=2)
            results.append((name, label, result))
    adjusted: dict[str, list[float]] = {}
    for label in responses.values():
        ps = [r.p_interaction for _, lab, r in results if lab == label]
        adjusted[label] = holm(ps)
    arms = sorted(set(sub["base"]), key=lambda b: (b != FROZEN, b))  # the frozen arm first
    numbers = ["F base", "p base", "F comp.", "p comp.", "F inter.", "p inter.", "η²p inter.", "Holm p inter.", "df res."]
    effects = [c for arm in arms for c in (f"Δ comp. {arm}", f"95% CI {arm}")]
    columns = numbers + effects + ["verdict", "note"]
    rows = [f"{name} / {label}" for name, label, _ in results]
    design = "" if study == "interaction" else f", {study.removeprefix('interaction_')}'s design"
    spec = TableSpec(f"T8_{study}_{dataset}", "8", f"Interaction analysis ({dataset}{design})",
                     "Two-way ANOVA (statsmodels OLS, y ~ C(base) * C(component), type II sums of squares) per component "
                     "and response, replicates = seeds (residual df per row); partial eta squared of the interaction; "
                     "Holm-adjusted interaction p across components, per response. Δ comp.: the component's simple effect "
                     "(on minus off) in each base arm, with a 95% interval from the model's pooled residual variance. "
                     f"Verdict on the Holm-adjusted p at alpha {alpha}: Integral if the interaction is significant and the "
                     f"component helps more with the {FROZEN} base, Opposite if significant the other way, Generic otherwise. "
                     "The trainable arm is the sequential strategy: its final-metric effect is measured after forgetting; the "
                     "'just trained' responses take each task right after its own training (the routed accuracy matrix's "
                     "diagonal R[i,i]), before a later task could change it.",
                     rows, columns, row_header="component / response",
                     p_columns=("p base", "p comp.", "p inter.", "Holm p inter."), column_digits={"df res.": 0})
    counters = {label: 0 for label in responses.values()}
    for (name, label, result), row in zip(results, rows):
        holm_p = adjusted[label][counters[label]]
        counters[label] += 1
        values = [result.f_base, result.p_base, result.f_component, result.p_component, result.f_interaction,
                  result.p_interaction, result.eta2_interaction, holm_p, result.df_residual]
        for column, value in zip(numbers, values):
            spec.cells[(row, column)] = Cell(mean=value, n=result.n) if np.isfinite(value) else Cell()
        for arm in arms:
            effect = result.simple.get(arm)
            spec.cells[(row, f"Δ comp. {arm}")] = Cell(mean=effect.effect, n=result.n) if effect else Cell()
            spec.cells[(row, f"95% CI {arm}")] = Cell(text=f"[{effect.low:+.3f}, {effect.high:+.3f}]" if effect else "--")
        spec.cells[(row, "verdict")] = Cell(text=result.verdict(holm_p, alpha))
        spec.cells[(row, "note")] = Cell(text=result.note or "")
    return spec
