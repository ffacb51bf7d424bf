"""Table 8's blocked two-way analysis against a hand computation and statsmodels' AnovaRM; degenerate designs marked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.anova import AnovaRM

from analysis.blocked import contrasts
from analysis.stats import blocked_anova, holm, one_way_anova

CELLS = [("frozen", "on"), ("frozen", "off"), ("trainable", "on"), ("trainable", "off")]


def _design(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """One row per (cell, block): the k-th value of every cell belongs to seed k."""
    return pd.DataFrame(
        [
            {"block": f"s{k}", "base": b, "component": c, "y": y}
            for (b, c), ys in values.items()
            for k, y in enumerate(ys)
        ]
    )


def _values(
    means: dict[tuple[str, str], float], n: int, rng: np.random.Generator, sd: float = 0.01, seed_sd: float = 0.02
) -> dict[tuple[str, str], list[float]]:
    """Cell means plus a per-seed offset shared by the four cells (what blocking removes) plus noise."""
    offsets = rng.normal(0, seed_sd, n)
    return {cell: list(means[cell] + offsets + rng.normal(0, sd, n)) for cell in CELLS}


def test_blocked_analysis_matches_a_hand_computation_and_statsmodels_anova_rm() -> None:
    rng = np.random.default_rng(0)
    values = _values(
        {("frozen", "on"): 0.90, ("frozen", "off"): 0.80, ("trainable", "on"): 0.70, ("trainable", "off"): 0.69}, 5, rng
    )
    frame = _design(values)
    result = blocked_anova(frame, "WA", "y")
    assert result.valid and result.n == 5 and result.df_residual == 4 and result.note == ""
    # by hand: the per-seed interaction contrast and its one-sample t
    a = {cell: np.array(v) for cell, v in values.items()}
    c = (a[("frozen", "on")] - a[("frozen", "off")]) - (a[("trainable", "on")] - a[("trainable", "off")])
    t = c.mean() / (c.std(ddof=1) / np.sqrt(5))
    assert result.interaction is not None and result.interaction.estimate == pytest.approx(c.mean(), rel=1e-12)
    assert result.f_interaction == pytest.approx(t**2, rel=1e-9)
    assert result.p_interaction == pytest.approx(2 * sps.t.sf(abs(t), 4), rel=1e-9)
    assert result.eta2_interaction == pytest.approx(t**2 / (t**2 + 4), rel=1e-9)
    # the repeated-measures ANOVA (seeds as subjects, each effect against its effect-by-seed error) agrees on every F
    rm = AnovaRM(frame, "y", "block", within=["base", "component"]).fit().anova_table
    assert result.f_base == pytest.approx(rm.loc["base", "F Value"], rel=1e-9)
    assert result.f_component == pytest.approx(rm.loc["component", "F Value"], rel=1e-9)
    assert result.f_interaction == pytest.approx(rm.loc["base:component", "F Value"], rel=1e-9)
    assert result.p_interaction == pytest.approx(rm.loc["base:component", "Pr > F"], rel=1e-9)
    # simple effects: each arm's own per-seed differences, its own variance (no pooling across the arms)
    for arm in ("frozen", "trainable"):
        d = a[(arm, "on")] - a[(arm, "off")]
        half = sps.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
        got = result.simple[arm]
        assert (got.estimate, *got.interval()) == pytest.approx((d.mean(), d.mean() - half, d.mean() + half), rel=1e-9)
    low, high = result.eta2_interval
    assert 0 <= low < result.eta2_interaction < high <= 1
    assert result.verdict(result.p_interaction) == "Integral"  # the component matters only with a frozen base


def test_partial_eta_squared_interval_inverts_the_noncentral_f() -> None:
    rng = np.random.default_rng(3)
    result = blocked_anova(
        _design(
            _values(
                {("frozen", "on"): 0.9, ("frozen", "off"): 0.85, ("trainable", "on"): 0.8, ("trainable", "off"): 0.8},
                6,
                rng,
            )
        ),
        "X",
        "y",
    )
    low, high = result.eta2_interval
    f, df = result.f_interaction, result.df_residual
    to_lambda = lambda e: e / (1 - e) * (1 + df + 1)  # noqa: E731 - eta2 = lambda / (lambda + df1 + df2 + 1)
    if low > 0:
        assert sps.ncf.cdf(f, 1, df, to_lambda(low)) == pytest.approx(0.975, abs=1e-6)
    assert sps.ncf.cdf(f, 1, df, to_lambda(high)) == pytest.approx(0.025, abs=1e-6)


def test_arms_with_different_spreads_keep_their_own_variances() -> None:
    """The review's case: the frozen arm's SD a tenth of the trainable arm's; a pooled variance would mix them."""
    rng = np.random.default_rng(2)
    values = {
        ("frozen", "on"): list(0.50 + rng.normal(0, 0.0002, 4)),
        ("frozen", "off"): list(0.49 + rng.normal(0, 0.0002, 4)),
        ("trainable", "on"): list(0.40 + rng.normal(0, 0.008, 4)),
        ("trainable", "off"): list(0.40 + rng.normal(0, 0.008, 4)),
    }
    found = contrasts(_design(values))
    frozen, trainable = found["simple:frozen"], found["simple:trainable"]
    assert trainable.se > 10 * frozen.se
    d = np.array(values[("frozen", "on")]) - np.array(values[("frozen", "off")])
    assert frozen.se == pytest.approx(d.std(ddof=1) / 2, rel=1e-12)  # only the frozen arm's own differences


def test_verdict_needs_the_adjusted_p_the_papers_direction_and_an_equivalence_for_generic() -> None:
    rng = np.random.default_rng(1)
    helps_frozen = {("frozen", "on"): 0.9, ("frozen", "off"): 0.8, ("trainable", "on"): 0.7, ("trainable", "off"): 0.7}
    helps_trainable = {
        ("frozen", "on"): 0.8,
        ("frozen", "off"): 0.8,
        ("trainable", "on"): 0.8,
        ("trainable", "off"): 0.7,
    }
    verdicts = {}
    for name, means in (("frozen", helps_frozen), ("trainable", helps_trainable)):
        result = blocked_anova(_design(_values(means, 5, rng)), "X", "y")
        assert result.p_interaction < 0.01
        verdicts[name] = result.verdict(result.p_interaction)
        # the same design once the multiplicity adjustment leaves p >= alpha: absence of evidence is not "Generic"
        assert result.verdict(0.2) == "no interaction detected"
    assert verdicts == {"frozen": "Integral", "trainable": "Opposite"}


def test_generic_only_when_the_interaction_is_shown_to_be_small() -> None:
    rng = np.random.default_rng(4)
    same = {("frozen", "on"): 0.9, ("frozen", "off"): 0.8, ("trainable", "on"): 0.9, ("trainable", "off"): 0.8}
    tight = blocked_anova(_design(_values(same, 8, rng, sd=0.0005)), "S", "y")  # contrast pinned within ±0.005
    assert tight.p_equivalent < 0.01 and tight.verdict(tight.p_interaction, 0.05, tight.p_equivalent) == "Generic"
    loose = blocked_anova(_design(_values(same, 3, rng, sd=0.02)), "S", "y")  # no interaction seen, none shown absent
    assert loose.p_equivalent > 0.05
    assert loose.verdict(loose.p_interaction, 0.05, loose.p_equivalent) == "no interaction detected"


def test_degenerate_designs_are_marked() -> None:
    values = {
        ("frozen", "on"): [1.0, 1.0],
        ("frozen", "off"): [0.5, 0.5],
        ("trainable", "on"): [0.9, 0.9],
        ("trainable", "off"): [0.4, 0.4],
    }
    with pytest.warns(UserWarning, match="zero variance"):
        flat = blocked_anova(_design(values), "DIA", "y")
    assert not flat.valid and flat.verdict(0.01) == "untested" and np.isnan(flat.f_interaction)
    frame = _design(values)
    frame = frame[~((frame["base"] == "trainable") & (frame["component"] == "off"))]
    with pytest.warns(UserWarning, match="empty"):
        empty = blocked_anova(frame, "DIA", "y")
    assert not empty.valid and "empty" in empty.note
    rng = np.random.default_rng(1)
    noisy = {k: list(np.array(v + [v[0]]) + rng.normal(0, 0.01, 3)) for k, v in values.items()}
    noisy[("frozen", "on")][2] = np.nan  # seed 2 lost one cell: it leaves the blocked analysis
    with pytest.warns(UserWarning, match="missing"):
        partial = blocked_anova(_design(noisy), "DIA", "y")
    assert partial.valid and "1 missing" in partial.note and partial.n == 2
    with pytest.warns(UserWarning, match="fewer than 2 blocks"):
        single = blocked_anova(_design({k: v[:1] for k, v in values.items()}), "DIA", "y")
    assert not single.valid


def test_holm() -> None:
    adjusted = holm([0.01, 0.04, np.nan, 0.03])
    assert (
        adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06) and adjusted[1] == pytest.approx(0.06)
    )
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


def _sweep(
    rng: np.random.Generator, effect_pp: float, values: int = 5, seeds: int = 5, sd_pp: float = 1.0
) -> pd.DataFrame:
    """One sweep's run-level rows: P-AP = 0.5 + effect * value index / (values - 1) + noise (percentage points)."""
    rows = []
    for v in range(values):
        for seed in range(seeds):
            y = 0.5 + (effect_pp * v / (values - 1) + rng.normal(0, sd_pp)) / 100
            rows.append(
                {
                    "value": f"{v}" + (" (default)" if v == 0 else ""),
                    "variant": f"x {v}",
                    "seed": seed,
                    "status": "ok",
                    "pixel_ap_routed": y,
                    "image_auroc_routed": y,
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_sensitivity_class_needs_evidence_so_a_null_sweep_is_none_detected() -> None:
    """Without the gate, noise alone made most null sweeps Medium (spread of 5 means of 5 seeds at 1 pp SD)."""
    import warnings

    from analysis.sweeps import summary_table

    rng = np.random.default_rng(0)
    labels: dict[str, list[str]] = {"null": [], "real": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(100):
            for name, effect in (("null", 0.0), ("real", 5.0)):
                spec = summary_table({"x": _sweep(rng, effect)}, "synth")
                labels[name].append(str(spec.cell("x", "sensitivity").text))
    null_none = np.mean([label == "none detected" for label in labels["null"]])
    real_high = np.mean([label == "High" for label in labels["real"]])
    assert null_none >= 0.9 and real_high >= 0.9, (null_none, real_high)  # alpha 0.05: about 95% of nulls


def test_table8_decides_on_holm_across_components_not_the_raw_p() -> None:
    """Three components: B's interaction p (0.034) is below 0.05 alone, but Holm over the three components
    doubles it (B is the second smallest): Table 8 must print 'no interaction detected' for B, not 'Integral'."""
    from analysis.interaction import interaction_table

    contrasts = {
        "A": [0.10, 0.11, 0.105, 0.102],  # p 2e-5: Integral either way
        "B": [0.02, 0.03, 0.005, 0.025],  # p 0.034 raw, 0.068 after Holm (x 2)
        "C": [0.01, -0.01, 0.005, -0.004],  # p 0.96
    }
    rows = []
    for name, values in contrasts.items():
        for seed, c in enumerate(values):
            for base in ("frozen", "trainable"):
                for level in ("on", "off"):
                    y = 0.8 + (c if (base, level) == ("frozen", "on") else 0.0) + 0.001 * seed
                    rows.append(
                        {
                            "study": "interaction", "dataset": "d", "variant": f"{name}|{base}|{level}",
                            "seed": seed, "order": "alphabetical", "status": "ok",
                            **{column: y for column in ("pixel_ap_routed", "image_auroc_routed",
                                                        "pixel_ap_just_trained", "image_auroc_just_trained")},
                        }
                    )  # fmt: skip
    spec = interaction_table(pd.DataFrame(rows), "d")
    raw = {name: sps.ttest_1samp(values, 0).pvalue for name, values in contrasts.items()}
    assert raw["B"] == pytest.approx(0.0342, abs=1e-4)
    verdicts = {row.split(" / ")[0]: spec.cells[(row, "verdict")].text for row in spec.rows if row.endswith("/ P-AP")}
    assert verdicts == {"A": "Integral", "B": "no interaction detected", "C": "no interaction detected"}
    holm_b = spec.cells[("B / P-AP", "Holm p inter.")].mean
    assert holm_b == pytest.approx(2 * raw["B"], rel=1e-6)  # Holm's second step: (m - 1) x p
