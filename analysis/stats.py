"""Two-way ANOVA of the interaction study (Table 8).

For one component and one response: ``ols("y ~ C(base) * C(component)")`` with
statsmodels, type II sums of squares, replicates = seeds. Partial eta squared =
``SS_effect / (SS_effect + SS_residual)``. A design that cannot support the test
(a missing cell, a diverged run's missing value, fewer than two replicates in a
cell, zero residual variance) gives a result marked with the reason and a warning,
never a crash and never a silent NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from analysis.render import Cell

FROZEN = "frozen"  # the base level the paper's criterion names (variants COMPONENT|frozen|on ...)


@dataclass
class AnovaResult:
    """Main effects and interaction of one 2 x 2 design (NaN statistics when ``valid`` is False)."""

    component: str
    response: str
    n: int
    valid: bool = False
    f_base: float = float("nan")
    p_base: float = float("nan")
    f_component: float = float("nan")
    p_component: float = float("nan")
    f_interaction: float = float("nan")
    p_interaction: float = float("nan")
    eta2_base: float = float("nan")
    eta2_component: float = float("nan")
    eta2_interaction: float = float("nan")
    df_residual: float = float("nan")
    note: str = ""
    cells: dict[str, int] = field(default_factory=dict)
    simple: dict[str, "SimpleEffect"] = field(default_factory=dict)  # base level -> component effect in that arm

    def verdict(self, adjusted_p: float, alpha: float = 0.05, frozen: str = FROZEN) -> str:
        """The paper's criterion, decided on the multiplicity-adjusted interaction p.

        ``Integral``: the interaction is significant (``adjusted_p < alpha``) and the component
        helps more with the frozen base than with the trainable one; ``Opposite``: significant
        in the other direction (it helps more when the base is trainable); ``Generic``: no
        significant interaction; ``untested`` when there is no test or no ``frozen`` arm.
        """
        if not self.valid or not np.isfinite(adjusted_p):
            return "untested"
        if adjusted_p >= alpha:
            return "Generic"
        others = [b for b in self.simple if b != frozen]
        if frozen not in self.simple or len(others) != 1:
            return "untested"
        return "Integral" if self.simple[frozen].effect > self.simple[others[0]].effect else "Opposite"


@dataclass
class SimpleEffect:
    """The component's effect (``on`` minus ``off``) within one base arm, with its 95% interval.

    The interval uses the two-way model's pooled residual variance and residual df (the
    standard simple-effects test after a two-way ANOVA).
    """

    effect: float
    low: float
    high: float


def _impossible(counts: pd.Series) -> str:
    if len(counts) < 4:
        return "a cell of the 2x2 design is empty"
    if counts.min() < 2:
        return "a cell has fewer than 2 replicates"
    return ""


def two_way_anova(data: pd.DataFrame, component: str, response: str) -> AnovaResult:
    """ANOVA of ``response`` on factors ``base`` and ``component`` (columns of ``data``).

    Args:
        data: one row per replicate with columns ``base`` (e.g. frozen/trainable),
            ``component`` (on/off) and ``response`` (NaN for a diverged or missing run).
    """
    frame = data[["base", "component", response]].rename(columns={response: "y"})
    missing = int(frame["y"].isna().sum())
    frame = frame.dropna()
    result = AnovaResult(component=component, response=response, n=len(frame))
    counts = frame.groupby(["base", "component"]).size()
    result.cells = {f"{b}/{c}": int(n) for (b, c), n in counts.items()}
    reason = _impossible(counts)
    if not reason:
        model = smf.ols("y ~ C(base) * C(component)", data=frame).fit()
        if model.df_resid <= 0 or model.ssr <= 1e-12 * max(1.0, float((frame["y"] ** 2).sum())):
            reason = "zero residual variance"
        else:
            table = anova_lm(model, typ=2)
            ss_res = table.loc["Residual", "sum_sq"]
            rows = {"base": "C(base)", "component": "C(component)", "interaction": "C(base):C(component)"}
            for key, row in rows.items():
                ss = table.loc[row, "sum_sq"]
                setattr(result, f"f_{key}", float(table.loc[row, "F"]))
                setattr(result, f"p_{key}", float(table.loc[row, "PR(>F)"]))
                setattr(result, f"eta2_{key}", float(ss / (ss + ss_res)))
            result.df_residual = float(model.df_resid)
            result.simple = simple_effects(frame, float(model.mse_resid), float(model.df_resid))
            result.valid = True
    notes = [reason] if reason else []
    if missing:
        notes.append(f"{missing} missing value(s): unbalanced")
    result.note = "; ".join(notes)
    if result.note:
        warnings.warn(f"ANOVA {component} / {response}: {result.note}", stacklevel=2)
    return result


def simple_effects(frame: pd.DataFrame, mse: float, df: float, level: float = 0.95) -> dict[str, SimpleEffect]:
    """Per base level: mean of ``y`` with the component ``on`` minus ``off``, and its interval.

    ``frame`` has columns ``base``, ``component`` (``on``/``off``) and ``y``; ``mse`` and ``df``
    are the two-way model's residual mean square and degrees of freedom.
    """
    out = {}
    quantile = float(scipy_stats.t.ppf(0.5 + level / 2, df))
    for base, arm in frame.groupby("base", sort=True):
        on, off = arm.loc[arm["component"] == "on", "y"], arm.loc[arm["component"] == "off", "y"]
        if on.empty or off.empty:
            continue
        effect = float(on.mean() - off.mean())
        half = quantile * float(np.sqrt(mse * (1 / len(on) + 1 / len(off))))
        out[str(base)] = SimpleEffect(effect, effect - half, effect + half)
    return out


def holm(pvalues: list[float]) -> list[float]:
    """Holm-adjusted p-values (NaN entries stay NaN)."""
    values = np.asarray(pvalues, dtype=float)
    out = np.full_like(values, np.nan)
    finite = np.isfinite(values)
    if finite.any():
        out[finite] = multipletests(values[finite], method="holm")[1]
    return out.tolist()


def one_way_anova(data: pd.DataFrame, factor: str, response: str) -> tuple[float, str]:
    """p-value of a one-way ANOVA of ``response`` on ``factor`` (statsmodels OLS, type II).

    Returns ``(p, note)``: NaN and the reason when the design cannot support the test
    (fewer than two levels, no level with two replicates, zero residual variance).
    """
    frame = data[[factor, response]].rename(columns={factor: "level", response: "y"}).dropna()
    counts = frame.groupby("level").size()
    if len(counts) < 2:
        return float("nan"), "fewer than 2 levels"
    if counts.max() < 2 or len(frame) <= len(counts):
        return float("nan"), "no replicates"
    model = smf.ols("y ~ C(level)", data=frame).fit()
    if model.ssr <= 1e-12 * max(1.0, float((frame["y"] ** 2).sum())):
        return float("nan"), "zero residual variance"
    return float(anova_lm(model, typ=2).loc["C(level)", "PR(>F)"]), ""


@dataclass
class PairedDifference:
    """Mean of per-seed differences ``a - b`` over the seeds both have, with a 95% t interval (NaN for n < 2)."""

    mean: float
    n: int
    low: float = float("nan")
    high: float = float("nan")


def paired_difference(a: pd.Series, b: pd.Series, level: float = 0.95) -> PairedDifference:
    """``a`` and ``b`` indexed by replicate (seed, task order): pair on the common index, finite values only."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    diff = (both["a"] - both["b"]).to_numpy(dtype=float)
    if len(diff) == 0:
        return PairedDifference(float("nan"), 0)
    out = PairedDifference(float(diff.mean()), int(len(diff)))
    out.low, out.high = t_interval(diff, level)
    return out


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Two-sided t interval of the mean of ``values`` (NaN for fewer than 2 values)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    half = float(scipy_stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
    mean = float(values.mean())
    return mean - half, mean + half


def delta_cell(rows: pd.DataFrame, reference: pd.DataFrame, column: str) -> Cell:
    """The mean per-seed difference of ``column`` (finished runs of both) and its 95% interval."""
    def by_seed(frame: pd.DataFrame) -> pd.Series:
        ok = frame[frame["status"] == "ok"]
        return ok.set_index(["seed", "order"])[column].astype(float)

    diff = paired_difference(by_seed(rows), by_seed(reference))
    if diff.n == 0:
        return Cell()
    interval = (diff.low, diff.high) if diff.n > 1 else None
    return Cell(mean=diff.mean, n=diff.n, interval=interval)
