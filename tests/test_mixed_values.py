"""The category random-effect model (Table 16b) at its edges, by hand: the notes it writes, two categories,
the interval's level, an unbalanced design on statsmodels' path, the optimisers it falls back to, and the rows
it reads."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from analysis import mixed
from analysis.mixed import EPS, _mixedlm_reml, category_model, category_values, logit, prediction_interval

BOUNDARY = "category variance at its boundary (0): categories no more different than seeds"


def _frame(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"category": c, "seed": s, "y": y} for c, ys in values.items() for s, y in enumerate(ys)])


def test_logit_clips_both_ends_and_prediction_uses_the_eps_it_is_given() -> None:
    assert logit(np.array([0.0, 1.0])) == pytest.approx([np.log(EPS / (1 - EPS)), np.log((1 - EPS) / EPS)])
    means = np.array([1.0, 0.9, 0.6])
    for eps in (EPS, 0.05):
        z = np.log(np.clip(means, eps, 1 - eps) / (1 - np.clip(means, eps, 1 - eps)))
        half = sps.t.ppf(0.975, 2) * z.std(ddof=1) * np.sqrt(1 + 1 / 3)
        expected = [1 / (1 + np.exp(-(z.mean() + sign * half))) for sign in (-1, 1)]
        assert prediction_interval(means, eps=eps) == pytest.approx(expected, abs=1e-12)


def test_two_categories_are_enough() -> None:
    z = logit(np.array([0.9, 0.7]))
    half = sps.t.ppf(0.975, 1) * z.std(ddof=1) * np.sqrt(1.5)
    assert prediction_interval(np.array([0.9, 0.7])) == pytest.approx(
        [1 / (1 + np.exp(-(z.mean() - half))), 1 / (1 + np.exp(-(z.mean() + half)))]
    )
    two = category_model(_frame({"a": [0.9, 0.92], "b": [0.7, 0.69]}))
    assert two.fitted and two.categories == 2 and two.note == ""
    assert two.mean == pytest.approx((0.9 + 0.92 + 0.7 + 0.69) / 4)


def test_each_note_word_for_word() -> None:
    assert category_model(_frame({"a": [0.9, 0.8]})).note == "fewer than two categories"
    assert category_model(_frame({"a": [0.9], "b": [0.8]})).note == (
        "one seed: the category and seed variances are not separable"
    )
    assert category_model(_frame({"a": [0.5, 0.5], "b": [0.5, 0.5]})).note == "no variance"
    # category means equal: MS_between = 0 < MS_within; the closed form converges by construction
    assert category_model(_frame({"a": [0.0, 1.0], "b": [1.0, 0.0], "c": [0.5, 0.5]})).note == BOUNDARY
    # categories a little more different than seeds: 0 < var_category < var_seed, no boundary
    near = category_model(_frame({"a": [0.50, 0.60], "b": [0.58, 0.66], "c": [0.45, 0.57]}))
    assert 0 < near.sd_category < near.sd_seed and near.note == ""
    unbalanced = category_model(_frame({"a": [0.9, 0.95, 0.93], "b": [0.7, 0.72], "c": [0.8, 0.86, 0.85]}))
    assert unbalanced.note == "unbalanced: some categories miss seeds"


def test_an_unbalanced_design_is_fitted_by_statsmodels_and_the_level_reaches_both_intervals() -> None:
    data = _frame({"a": [0.9, 0.95, 0.93], "b": [0.7, 0.72], "c": [0.8, 0.86, 0.85], "d": [0.6, 0.66, 0.61]})
    mean, se, var_category, var_seed, _ = _mixedlm_reml(data)
    found = category_model(data, level=0.9)
    assert found.mean == pytest.approx(mean, abs=1e-12) and found.mean != pytest.approx(data["y"].mean(), abs=1e-4)
    half = sps.t.ppf(0.95, 3) * se
    assert found.interval == pytest.approx((mean - half, mean + half), abs=1e-12)
    assert (found.sd_category, found.sd_seed) == pytest.approx((np.sqrt(var_category), np.sqrt(var_seed)))
    assert found.prediction == pytest.approx(prediction_interval(data.groupby("category")["y"].mean().to_numpy(), 0.9))


class _FakeModel:
    """statsmodels' MixedLM as far as ``_mixedlm_reml`` uses it: records each fit, converges on the n-th call."""

    def __init__(self, converges_at: int) -> None:
        self.calls: list[tuple[bool, str, dict[str, object]]] = []
        self.converges_at = converges_at

    def fit(self, reml: bool = False, method: str = "", **options: object) -> SimpleNamespace:
        self.calls.append((reml, method, options))
        warnings.warn("boundary", ConvergenceWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
        converged = len(self.calls) >= self.converges_at
        cov = pd.DataFrame([[-1e-9 if converged else 0.3]])
        return SimpleNamespace(
            converged=converged, fe_params={"Intercept": 0.8}, bse_fe={"Intercept": 0.05}, cov_re=cov, scale=0.01
        )


@pytest.mark.parametrize("converges_at", [1, 2, 3, 4])
def test_reml_falls_back_from_bfgs_to_powell_to_lbfgs(monkeypatch: pytest.MonkeyPatch, converges_at: int) -> None:
    model = _FakeModel(converges_at)
    monkeypatch.setattr(mixed.smf, "mixedlm", lambda *args, **kwargs: model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = _mixedlm_reml(_frame({"a": [0.9, 0.8], "b": [0.7]}))
    plan = [(True, "bfgs", {"gtol": 1e-12}), (True, "powell", {"maxiter": 20000}), (True, "lbfgs", {})]
    assert model.calls == plan[: min(converges_at, 3)]
    # a boundary estimate (a negative variance) is clipped to 0, and the fit says whether it converged
    assert found == (0.8, 0.05, 0.0 if converges_at <= 3 else 0.3, 0.01, converges_at <= 3)
    assert [str(w.message) for w in caught] == ["something else"] * len(model.calls)  # only convergence is muted


def test_a_fit_that_did_not_converge_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mixed, "_mixedlm_reml", lambda present: (0.8, 0.05, 0.02, 0.01, False))
    found = category_model(_frame({"a": [0.9, 0.95, 0.93], "b": [0.7, 0.72], "c": [0.8, 0.86, 0.85]}))
    assert found.note == "unbalanced: some categories miss seeds; the fit did not converge"
    monkeypatch.setattr(mixed, "_mixedlm_reml", lambda present: (0.8, 0.05, 0.0, 0.01, False))
    found = category_model(_frame({"a": [0.9, 0.95, 0.93], "b": [0.7, 0.72], "c": [0.8, 0.86, 0.85]}))
    assert found.note == f"unbalanced: some categories miss seeds; the fit did not converge; {BOUNDARY}"


def test_category_values_reads_one_datasets_finished_per_category_rows() -> None:
    frame = pd.DataFrame(
        [
            {"dataset": "mvtec", "category": "bottle", "seed": 0, "status": "ok", "m": "0.9"},
            {"dataset": "mvtec", "category": "cable", "seed": 1, "status": "ok", "m": "n/a"},
            {"dataset": "mvtec", "category": None, "seed": 0, "status": "ok", "m": 0.5},  # the run's mean row
            {"dataset": "mvtec", "category": "bottle", "seed": 1, "status": "diverged", "m": 0.1},
            {"dataset": "visa", "category": "pcb1", "seed": 0, "status": "ok", "m": 0.7},
        ]
    )
    found = category_values(frame, "mvtec", "m")
    assert list(found.columns) == ["category", "seed", "y"]
    assert found["category"].tolist() == ["bottle", "cable"] and found["seed"].tolist() == [0, 1]
    assert found["y"].iloc[0] == 0.9 and np.isnan(found["y"].iloc[1])  # not a number: no value
    assert category_values(frame, "visa", "m")["y"].tolist() == [0.7]
