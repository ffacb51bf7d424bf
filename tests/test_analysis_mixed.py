"""The main study's category random-effect model (Table 16b) against a hand computation; both REML paths agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.mixed import _mixedlm_reml, category_model


def _balanced(
    rng: np.random.Generator, categories: int = 5, seeds: int = 3, sd_category: float = 0.1, sd_seed: float = 0.02
) -> pd.DataFrame:
    means = 0.9 + rng.normal(0, sd_category, categories)
    return pd.DataFrame(
        [
            {"category": f"c{c}", "seed": s, "y": means[c] + rng.normal(0, sd_seed)}
            for c in range(categories)
            for s in range(seeds)
        ]
    )


def test_balanced_design_matches_the_one_way_anova_by_hand() -> None:
    data = _balanced(np.random.default_rng(0))
    y = data.pivot(index="category", columns="seed", values="y").to_numpy()  # (categories, seeds)
    c, s = y.shape
    grand = y.mean()
    ms_between = s * ((y.mean(axis=1) - grand) ** 2).sum() / (c - 1)
    ms_within = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum() / (c * (s - 1))
    half = sps.t.ppf(0.975, c - 1) * np.sqrt(ms_between / (c * s))
    found = category_model(data)
    assert found.fitted and found.note == "" and (found.categories, found.seeds, found.values) == (5, 3, 15)
    assert found.mean == pytest.approx(grand, abs=1e-12)
    assert found.interval == pytest.approx((grand - half, grand + half), abs=1e-12)
    assert found.sd_seed == pytest.approx(np.sqrt(ms_within), abs=1e-12)
    assert found.sd_category == pytest.approx(np.sqrt((ms_between - ms_within) / s), abs=1e-12)
    # wider than an interval over seeds alone: the categories are a sample too
    per_seed = y.mean(axis=0)
    assert half > sps.t.ppf(0.975, s - 1) * per_seed.std(ddof=1) / np.sqrt(s)


def test_statsmodels_mixedlm_agrees_with_the_closed_form_on_a_balanced_design() -> None:
    data = _balanced(np.random.default_rng(1), categories=6)
    found = category_model(data)
    mean, se, var_category, var_seed, converged = _mixedlm_reml(data)
    assert converged
    assert mean == pytest.approx(found.mean, abs=1e-9)
    assert se * sps.t.ppf(0.975, 5) == pytest.approx(found.interval[1] - found.mean, rel=1e-5)
    assert np.sqrt(var_category) == pytest.approx(found.sd_category, rel=1e-5)
    assert np.sqrt(var_seed) == pytest.approx(found.sd_seed, rel=1e-5)


def test_categories_no_more_different_than_seeds_put_the_category_variance_at_zero() -> None:
    data = pd.DataFrame({"category": list("aabbcc"), "seed": [0, 1] * 3, "y": [0.0, 1.0, 1.0, 0.0, 0.5, 0.5]})
    found = category_model(data)  # category means all 0.5: MS_between = 0 < MS_within
    assert found.sd_category == 0 and "boundary" in found.note
    assert found.sd_seed == pytest.approx(np.sqrt(1.0 / 5))  # total sum of squares 1.0 over N - 1 = 5
    assert found.interval[1] - found.mean == pytest.approx(sps.t.ppf(0.975, 2) * np.sqrt(0.2 / 6))


def test_unbalanced_and_degenerate_designs_are_said() -> None:
    data = _balanced(np.random.default_rng(2))
    data.loc[0, "y"] = np.nan  # a diverged run's category value
    found = category_model(data)
    assert found.fitted and found.values == 14 and "unbalanced" in found.note
    assert found.interval[0] < found.mean < found.interval[1]
    one_seed = category_model(data[data["seed"] == 1])
    assert not one_seed.fitted and "one seed" in one_seed.note
    assert "fewer than two" in category_model(data[data["category"] == "c1"]).note
    assert category_model(data.assign(y=0.5)).note == "no variance"


def test_prediction_interval_of_a_new_category_by_hand_on_the_logit_scale() -> None:
    from analysis.mixed import prediction_interval

    means = np.array([1.0, 1.0, 0.95, 0.8])  # two categories at the ceiling, clipped to 0.999
    z = np.log(np.array([0.999, 0.999, 0.95, 0.8]) / (1 - np.array([0.999, 0.999, 0.95, 0.8])))
    half = sps.t.ppf(0.975, 3) * z.std(ddof=1) * np.sqrt(1 + 1 / 4)
    expected = tuple(1 / (1 + np.exp(-(z.mean() + sign * half))) for sign in (-1, 1))
    found = prediction_interval(means)
    assert found == pytest.approx(expected, abs=1e-12)
    assert 0 < found[0] < found[1] < 1  # inside the metric's range, unlike a normal interval here
    data = pd.DataFrame([{"category": f"c{c}", "seed": s, "y": m} for c, m in enumerate(means) for s in range(3)])
    fitted = category_model(data)
    assert fitted.prediction == pytest.approx(expected, abs=1e-12)
    assert np.isnan(prediction_interval(np.array([0.9]))[0])
