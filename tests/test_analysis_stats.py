"""Two-way ANOVA against a hand-computed decomposition; degenerate designs are marked, not crashed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.stats import holm, one_way_anova, two_way_anova


def _design(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"base": b, "component": c, "y": y} for (b, c), ys in values.items() for y in ys])


def _hand_anova(values: dict[tuple[str, str], list[float]]) -> dict[str, float]:
    """Balanced 2x2 decomposition from cell means (type I = II = III when balanced)."""
    n = len(next(iter(values.values())))
    all_y = np.concatenate([np.array(v) for v in values.values()])
    grand = all_y.mean()
    levels_b = sorted({b for b, _ in values})
    levels_c = sorted({c for _, c in values})
    mean_b = {b: np.mean([y for (bb, _), ys in values.items() if bb == b for y in ys]) for b in levels_b}
    mean_c = {c: np.mean([y for (_, cc), ys in values.items() if cc == c for y in ys]) for c in levels_c}
    cell = {k: np.mean(v) for k, v in values.items()}
    ss_b = 2 * n * sum((mean_b[b] - grand) ** 2 for b in levels_b)
    ss_c = 2 * n * sum((mean_c[c] - grand) ** 2 for c in levels_c)
    ss_bc = n * sum((cell[(b, c)] - mean_b[b] - mean_c[c] + grand) ** 2 for b in levels_b for c in levels_c)
    ss_e = sum(((np.array(v) - cell[k]) ** 2).sum() for k, v in values.items())
    df_e = 4 * (n - 1)
    ms_e = ss_e / df_e
    out = {}
    for name, ss in (("base", ss_b), ("component", ss_c), ("interaction", ss_bc)):
        out[f"f_{name}"] = ss / ms_e
        out[f"p_{name}"] = sps.f.sf(ss / ms_e, 1, df_e)
        out[f"eta2_{name}"] = ss / (ss + ss_e)
    out["df_residual"] = df_e
    return out


def test_anova_matches_hand_computation_on_a_balanced_design() -> None:
    rng = np.random.default_rng(0)
    values = {
        ("frozen", "on"): list(0.90 + rng.normal(0, 0.01, 5)),
        ("frozen", "off"): list(0.80 + rng.normal(0, 0.01, 5)),
        ("trainable", "on"): list(0.70 + rng.normal(0, 0.01, 5)),
        ("trainable", "off"): list(0.69 + rng.normal(0, 0.01, 5)),
    }
    result = two_way_anova(_design(values), "WA", "y")
    expected = _hand_anova(values)
    assert result.valid and result.df_residual == 16 and result.note == ""
    for key, value in expected.items():
        assert getattr(result, key) == pytest.approx(value, rel=1e-9), key
    assert result.verdict(result.p_interaction) == "Integral"  # the component matters only with a frozen base
    # simple effects by hand: cell mean difference, pooled residual variance, t quantile at the residual df
    ms_e = sum(((np.array(v) - np.mean(v)) ** 2).sum() for v in values.values()) / 16
    for arm in ("frozen", "trainable"):
        diff = np.mean(values[(arm, "on")]) - np.mean(values[(arm, "off")])
        half = sps.t.ppf(0.975, 16) * np.sqrt(ms_e * (1 / 5 + 1 / 5))
        got = result.simple[arm]
        assert (got.effect, got.low, got.high) == pytest.approx((diff, diff - half, diff + half), rel=1e-9), arm


def test_verdict_needs_the_adjusted_p_and_the_papers_direction() -> None:
    rng = np.random.default_rng(1)
    helps_frozen = {("frozen", "on"): 0.9, ("frozen", "off"): 0.8, ("trainable", "on"): 0.7, ("trainable", "off"): 0.7}
    helps_trainable = {("frozen", "on"): 0.8, ("frozen", "off"): 0.8, ("trainable", "on"): 0.8, ("trainable", "off"): 0.7}
    verdicts = {}
    for name, means in (("frozen", helps_frozen), ("trainable", helps_trainable)):
        values = {k: list(m + rng.normal(0, 0.01, 5)) for k, m in means.items()}
        result = two_way_anova(_design(values), "X", "y")
        assert result.p_interaction < 1e-6
        verdicts[name] = result.verdict(result.p_interaction)
        assert result.verdict(0.2) == "Generic"  # the same design, once the multiplicity adjustment leaves p >= alpha
    # the same significant interaction: Integral only when the component helps more with the frozen base
    assert verdicts == {"frozen": "Integral", "trainable": "Opposite"}


def test_no_interaction_is_generic() -> None:
    values = {("frozen", "on"): [1.0, 1.2, 0.8], ("frozen", "off"): [0.5, 0.7, 0.3],
              ("trainable", "on"): [0.9, 1.1, 0.7], ("trainable", "off"): [0.4, 0.6, 0.2]}
    result = two_way_anova(_design(values), "TAL", "y")
    assert result.f_interaction == pytest.approx(0.0, abs=1e-9) and result.verdict(result.p_interaction) == "Generic"


def test_degenerate_designs_are_marked() -> None:
    values = {("frozen", "on"): [1.0, 1.0], ("frozen", "off"): [0.5, 0.5],
              ("trainable", "on"): [0.9, 0.9], ("trainable", "off"): [0.4, 0.4]}
    with pytest.warns(UserWarning, match="zero residual variance"):
        flat = two_way_anova(_design(values), "DIA", "y")
    assert not flat.valid and flat.verdict(0.01) == "untested" and np.isnan(flat.f_interaction)
    frame = _design(values)
    frame = frame[~((frame["base"] == "trainable") & (frame["component"] == "off"))]
    with pytest.warns(UserWarning, match="empty"):
        empty = two_way_anova(frame, "DIA", "y")
    assert not empty.valid and "empty" in empty.note
    rng = np.random.default_rng(1)
    noisy = {k: list(np.array(v) + rng.normal(0, 0.01, 2)) + [np.nan if k == ("frozen", "on") else v[0]] for k, v in values.items()}
    with pytest.warns(UserWarning, match="unbalanced"):
        unbalanced = two_way_anova(_design(noisy), "DIA", "y")
    assert unbalanced.valid and "1 missing" in unbalanced.note and unbalanced.n == 11


def test_holm() -> None:
    adjusted = holm([0.01, 0.04, np.nan, 0.03])
    assert adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06) and adjusted[1] == pytest.approx(0.06)
    assert np.isnan(adjusted[2])


def test_one_way_anova_matches_hand_computation() -> None:
    groups = {"a": [0.50, 0.52, 0.49], "b": [0.55, 0.58, 0.56], "c": [0.51, 0.50, 0.53]}
    frame = pd.DataFrame([{"value": k, "y": v} for k, vs in groups.items() for v in vs])
    grand = frame["y"].mean()
    ss_between = sum(len(v) * (np.mean(v) - grand) ** 2 for v in groups.values())
    ss_within = sum(((np.array(v) - np.mean(v)) ** 2).sum() for v in groups.values())
    f = (ss_between / 2) / (ss_within / 6)
    p, note = one_way_anova(frame, "value", "y")
    assert note == "" and p == pytest.approx(sps.f.sf(f, 2, 6), rel=1e-10)
    assert p == pytest.approx(sps.f_oneway(*groups.values()).pvalue, rel=1e-10)
    assert np.isnan(one_way_anova(frame[frame["value"] == "a"], "value", "y")[0])
    single = frame.groupby("value").head(1)
    assert one_way_anova(single, "value", "y")[1] == "no replicates"
    flat = frame.assign(y=frame["value"].map({"a": 0.5, "b": 0.6, "c": 0.7}))
    assert one_way_anova(flat, "value", "y")[1] == "zero residual variance"


def _sweep(rng: np.random.Generator, effect_pp: float, values: int = 5, seeds: int = 5, sd_pp: float = 1.0) -> pd.DataFrame:
    """One sweep's run-level rows: P-AP = 0.5 + effect * value index / (values - 1) + noise (percentage points)."""
    rows = []
    for v in range(values):
        for seed in range(seeds):
            y = 0.5 + (effect_pp * v / (values - 1) + rng.normal(0, sd_pp)) / 100
            rows.append({"value": f"{v}" + (" (default)" if v == 0 else ""), "variant": f"x {v}", "seed": seed,
                         "status": "ok", "pixel_ap_routed": y, "image_auroc_routed": y})
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_sensitivity_class_needs_evidence_so_a_null_sweep_is_none_detected() -> None:
    """Without the gate, noise alone made most null sweeps Medium (spread of 5 means of 5 seeds at 1 pp SD)."""
    import warnings

    from analysis.sweeps import summary_table

    rng = np.random.default_rng(0)
    labels = {"null": [], "real": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(100):
            for name, effect in (("null", 0.0), ("real", 5.0)):
                spec = summary_table({"x": _sweep(rng, effect)}, "synth")
                labels[name].append(spec.cell("x", "sensitivity").text)
    null_none = np.mean([label == "none detected" for label in labels["null"]])
    real_high = np.mean([label == "High" for label in labels["real"]])
    assert null_none >= 0.9 and real_high >= 0.9, (null_none, real_high)  # alpha 0.05: about 95% of nulls
