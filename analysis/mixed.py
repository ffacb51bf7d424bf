"""The main study's mean with categories as a random effect (a linear mixed model).

Table 16 gives the main study's mean over its categories with a standard deviation over
seeds: a statement about *these* categories, the seeds being the only source of variation.
A user who asks how the method would do on a product category like these needs the
categories as a sample too. For one dataset and one metric the model is

    y[c, s] = mu + u[c] + e[c, s],   u[c] ~ N(0, var_category),   e[c, s] ~ N(0, var_seed)

with ``y[c, s]`` the routed metric of category ``c`` in the run of seed ``s``, fitted by
REML: in closed form for a balanced design (every category with the same number of
values; the one-way ANOVA estimators, truncated at zero as REML truncates them), else by
statsmodels' ``MixedLM`` with categories as groups (the two agree on balanced designs: a
test checks it). The interval for ``mu`` is a t interval on ``categories - 1`` degrees of
freedom, exact for the balanced design, whose standard error is sqrt(MS_between / N).
Runs that diverged or did not finish are left out; a category missing in some seeds leaves
the design unbalanced, which the note says. The model is a normal one on a bounded metric:
the mean's interval may reach past 1, which says that so few categories pin the mean down
no better.

A new category is another question than the mean: :func:`prediction_interval` gives the
interval for a new category's mean over the same seeds, from the categories' own means
(``mean ± t_{c-1} sd sqrt(1 + 1/c)``, which needs no pooled seed variance: a category at a
ceiling of 1.000 with no seed variance is not pooled with another's), on the logit scale
(values clipped to ``[EPS, 1 - EPS]``), so that the interval stays inside (0, 1).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as scipy_stats
from statsmodels.tools.sm_exceptions import ConvergenceWarning

EPS = 0.001  # the logit scale's clip: a category mean at 1.000 counts as 0.999


def logit(values: np.ndarray, eps: float = EPS) -> np.ndarray:
    v = np.clip(np.asarray(values, dtype=float), eps, 1 - eps)
    return np.log(v / (1 - v))


def expit(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=float)))


def prediction_interval(category_means: np.ndarray, level: float = 0.95, eps: float = EPS) -> tuple[float, float]:
    """The ``level`` prediction interval of a new category's mean (over as many seeds as these), from the ``c``
    categories' means: on the logit scale ``m ± t_{c-1} sd sqrt(1 + 1/c)``, back-transformed (NaN for c < 2)."""
    z = logit(category_means, eps)
    c = len(z)
    if c < 2:
        return float("nan"), float("nan")
    half = float(scipy_stats.t.ppf(0.5 + level / 2, c - 1)) * float(z.std(ddof=1)) * np.sqrt(1 + 1 / c)
    return float(expit(z.mean() - half)), float(expit(z.mean() + half))


@dataclass
class MixedResult:
    """The fitted grand mean and variance components of one dataset and metric (NaN when not fitted)."""

    mean: float = float("nan")
    interval: tuple[float, float] = (float("nan"), float("nan"))  # the mean's t interval
    prediction: tuple[float, float] = (float("nan"), float("nan"))  # a new category's mean, logit scale
    sd_category: float = float("nan")  # sqrt(var_category): how far categories spread around the mean
    sd_seed: float = float("nan")  # sqrt(var_seed): how far a category's seeds spread
    categories: int = 0
    seeds: int = 0
    values: int = 0
    note: str = ""

    @property
    def fitted(self) -> bool:
        return bool(np.isfinite(self.mean))


def category_model(data: pd.DataFrame, level: float = 0.95) -> MixedResult:
    """Fit the random-intercept model to ``data`` (columns ``category``, ``seed``, ``y``; NaN = no value).

    Needs two categories and, in at least one category, two seeds (else the category and
    seed variances cannot be told apart): otherwise the result is unfitted with the reason.
    """
    present = data.dropna(subset=["y"])
    result = MixedResult(
        categories=int(present["category"].nunique()), seeds=int(present["seed"].nunique()), values=int(len(present))
    )
    per_category = present.groupby("category")["y"].size()
    if result.categories < 2:
        result.note = "fewer than two categories"
        return result
    if per_category.max() < 2:
        result.note = "one seed: the category and seed variances are not separable"
        return result
    if float(present["y"].std(ddof=0)) == 0.0:
        result.note = "no variance"
        return result
    balanced = per_category.nunique() == 1
    mean, se, var_category, var_seed, converged = (_balanced_reml if balanced else _mixedlm_reml)(present)
    result.mean = mean
    half = float(scipy_stats.t.ppf(0.5 + level / 2, result.categories - 1)) * se
    result.interval = (mean - half, mean + half)
    result.prediction = prediction_interval(present.groupby("category")["y"].mean().to_numpy(), level)
    result.sd_category = float(np.sqrt(var_category))
    result.sd_seed = float(np.sqrt(var_seed))
    notes = []
    if not balanced:
        notes.append("unbalanced: some categories miss seeds")
    if not converged:
        notes.append("the fit did not converge")
    if var_category <= 1e-8 * var_seed:
        notes.append("category variance at its boundary (0): categories no more different than seeds")
    result.note = "; ".join(notes)
    return result


def _balanced_reml(present: pd.DataFrame) -> tuple[float, float, float, float, bool]:
    """REML in closed form for ``s`` values in each of ``c`` categories: (mean, its SE, var_category, var_seed, True).

    With the one-way mean squares MS_between (c - 1 df) and MS_within (c (s - 1) df): when
    MS_between >= MS_within, var_seed = MS_within, var_category = (MS_between - MS_within) / s
    and SE = sqrt(MS_between / (c s)); otherwise REML puts var_category at 0 and var_seed
    at the total sum of squares over N - 1, SE = sqrt(var_seed / N).
    """
    groups = present.groupby("category")["y"]
    c, s, n = groups.ngroups, int(groups.size().iloc[0]), len(present)
    grand = float(present["y"].mean())
    ms_between = s * float(((groups.mean() - grand) ** 2).sum()) / (c - 1)
    ms_within = float(groups.var(ddof=1).mean())
    if ms_between >= ms_within:
        return grand, float(np.sqrt(ms_between / n)), (ms_between - ms_within) / s, ms_within, True
    var_seed = float(((present["y"] - grand) ** 2).sum()) / (n - 1)
    return grand, float(np.sqrt(var_seed / n)), 0.0, var_seed, True


def _mixedlm_reml(present: pd.DataFrame) -> tuple[float, float, float, float, bool]:
    """REML by statsmodels' MixedLM (any design): (mean, its SE, var_category, var_seed, converged)."""
    model = smf.mixedlm("y ~ 1", present, groups=present["category"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a boundary estimate is reported by the note instead
        # tight: the defaults stop ~1e-3 short of the optimum; statsmodels 0.15's BFGS can stop on a zero gradient
        # without calling it converged, so Powell (no gradient, as precise) comes before the default L-BFGS
        for method, options in (("bfgs", {"gtol": 1e-12}), ("powell", {"maxiter": 20000}), ("lbfgs", {})):
            fit = model.fit(reml=True, method=method, **options)
            if fit.converged:
                break
    return (
        float(fit.fe_params["Intercept"]),
        float(fit.bse_fe["Intercept"]),
        max(float(fit.cov_re.iloc[0, 0]), 0.0),
        float(fit.scale),
        bool(fit.converged),
    )


def category_values(frame: pd.DataFrame, dataset: str, column: str) -> pd.DataFrame:
    """``category, seed, y`` of one dataset's finished main-study MoLE-Flow runs (``frame``: per-category rows)."""
    sub = frame[(frame["dataset"] == dataset) & frame["category"].notna() & (frame["status"] == "ok")]
    return pd.DataFrame(
        {
            "category": sub["category"].to_numpy(),
            "seed": sub["seed"].to_numpy(),
            "y": pd.to_numeric(sub[column], errors="coerce").to_numpy(),
        }
    )
