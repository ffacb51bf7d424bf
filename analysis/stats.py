"""Statistics of the tables: Table 8's blocked two-way analysis, Holm, one-way ANOVA, paired differences.

Table 8, for one component and one response: the 2 x 2 design (base arm x component
on/off) analysed with the seeds (and task orders) as blocks, each effect against its own
effect-by-block error (:mod:`analysis.blocked`, the repeated-measures ANOVA): F = t^2 on
(1, n - 1) df, partial eta squared with its interval, the component's simple effect in each
arm with its own variance, and the interaction contrast. A design that cannot support the
tests (a missing cell, a diverged run's missing value, fewer than two complete blocks,
no variance) gives a result marked with the reason and a warning, never a crash and never
a silent NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as scipy_stats
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

from analysis.blocked import FROZEN, Contrast, contrasts
from analysis.render import Cell

GENERIC_MARGIN = 0.005  # the interaction contrast that counts as none: the claims registry's margin for Generic


@dataclass
class AnovaResult:
    """Main effects and interaction of one blocked 2 x 2 design (NaN statistics when ``valid`` is False)."""

    component: str
    response: str
    n: int  # complete blocks (seeds x orders with all four cells)
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
    eta2_interval: tuple[float, float] = (float("nan"), float("nan"))
    df_residual: float = float("nan")
    interaction: Contrast | None = None
    p_equivalent: float = float("nan")  # TOST p that the interaction contrast lies within ±GENERIC_MARGIN
    note: str = ""
    cells: dict[str, int] = field(default_factory=dict)
    simple: dict[str, Contrast] = field(default_factory=dict)  # base arm -> the component's effect in that arm

    def verdict(
        self, adjusted_p: float, alpha: float = 0.05, adjusted_equivalence: float = float("nan"), frozen: str = FROZEN
    ) -> str:
        """The paper's criterion, decided on multiplicity-adjusted p-values.

        ``Integral``: the interaction is significant (``adjusted_p < alpha``) and the component
        helps more with the frozen base; ``Opposite``: significant the other way; ``Generic``:
        the interaction contrast is shown to lie within ``±GENERIC_MARGIN`` (adjusted TOST p
        below alpha); ``no interaction detected`` otherwise (absence of evidence is not
        evidence of a generic component); ``untested`` without a test.
        """
        if not self.valid or not np.isfinite(adjusted_p) or self.interaction is None:
            return "untested"
        if adjusted_p < alpha:
            return "Integral" if self.interaction.estimate > 0 else "Opposite"
        if np.isfinite(adjusted_equivalence) and adjusted_equivalence < alpha:
            return "Generic"
        return "no interaction detected"


def blocked_anova(data: pd.DataFrame, component: str, response: str, frozen: str = FROZEN) -> AnovaResult:
    """Table 8's analysis of ``data`` (columns ``block``, ``base``, ``component`` on/off, ``y``; NaN for a missing run)."""
    frame = data[["block", "base", "component", "y"]]
    missing = int(frame["y"].isna().sum())
    present = frame.dropna()
    result = AnovaResult(component=component, response=response, n=0)
    counts = present.groupby(["base", "component"]).size()
    result.cells = {f"{b}/{c}": int(n) for (b, c), n in counts.items()}
    found = contrasts(present, frozen)
    result.simple = {k.split(":", 1)[1]: c for k, c in found.items() if k.startswith("simple:")}
    reason = ""
    if len(counts) < 4 or "interaction" not in found:
        reason = "a cell of the 2x2 design is empty"
    elif found["interaction"].n < 2:
        reason = "fewer than 2 blocks (seeds) with all four cells"
    elif not found["interaction"].testable:
        reason = "zero variance of the interaction contrast over the blocks"
    else:
        result.n = found["interaction"].n
        for key in ("base", "component", "interaction"):
            c = found[key]
            setattr(result, f"f_{key}", c.f)
            setattr(result, f"p_{key}", c.p_two_sided())
            setattr(result, f"eta2_{key}", c.eta2_partial)
        result.interaction = found["interaction"]
        result.eta2_interval = found["interaction"].eta2_interval()
        result.p_equivalent = found["interaction"].p_equivalent(GENERIC_MARGIN)
        result.df_residual = float(found["interaction"].df)
        result.valid = True
    notes = [reason] if reason else []
    if missing:
        notes.append(f"{missing} missing value(s): blocks without all four cells left out")
    result.note = "; ".join(notes)
    if result.note:
        warnings.warn(f"ANOVA {component} / {response}: {result.note}", stacklevel=2)
    return result


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
    return Cell(mean=diff.mean, n=diff.n, interval=interval, show_n=True)
