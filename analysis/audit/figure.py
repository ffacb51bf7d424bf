"""The audit's figure: each tested effect with the interval that decided it, beside the paper's value."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis.audit.verdicts import Outcome  # noqa: E402

COLOURS = {"supported": "tab:green", "contradicted": "tab:red", "inconclusive": "tab:grey"}


def effects_figure(outcomes: list[Outcome]) -> plt.Figure | None:
    """A forest plot of every part with an estimate: harness (point and the deciding interval at the audit's level,
    coloured by the claim's verdict) and the paper's value (a cross) where the registry has one in the same units; ``None`` if none."""
    rows = [(o, p) for o in outcomes for p in o.parts if np.isfinite(p.estimate) and np.isfinite(p.low)]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(rows) + 1.4))
    for y, (outcome, part) in enumerate(reversed(rows)):
        colour = COLOURS.get(outcome.verdict, "tab:grey")
        shift = part.origin
        ax.plot([part.low - shift, part.high - shift], [y, y], color=colour, lw=1.5)
        ax.plot(part.estimate - shift, y, "o", color=colour, ms=4)
        if np.isfinite(part.paper):
            ax.plot(part.paper - shift, y, "x", color="black", ms=5)
    ax.axvline(0.0, color="black", lw=0.6)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(
        [f"{o.claim_id} {p.label}{' (minus 1)' if p.origin else ''}"[:78] for o, p in reversed(rows)], fontsize=6
    )
    handles = [plt.Line2D([], [], color=c, marker="o", lw=1.5, label=f"claim {v}") for v, c in COLOURS.items()]
    handles.append(plt.Line2D([], [], color="black", marker="x", lw=0, label="the paper's value"))
    ax.legend(handles=handles, fontsize=6, loc="lower right")
    coverage = next((p.level for _, p in rows if np.isfinite(p.level)), float("nan"))
    ax.set_xlabel(
        f"harness estimate with the interval that decided it ({coverage:.1%}, the audit's level; metric fractions; "
        "differences are variant - reference)",
        fontsize=7,
    )
    ax.set_title("Claims audit: the tested effects", fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    return fig
