"""The registry's tests by name: each evaluator reads what its entry names from the run-level table
(one row per run) and the summaries, and returns the tested parts (:mod:`analysis.audit.evidence`);
the verdict module decides. Evaluators: :mod:`.structural` (one variant, the paper's own numbers),
:mod:`.comparisons` (variants against each other), :mod:`.designs` (depths, sweeps, re-scoring).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analysis.audit.comparisons import (
    against_bound,
    forgetting_order,
    interaction,
    paired,
    ranking,
    ratio,
    simple_effects_parts,
    strategy_order,
)
from analysis.audit.context import Context
from analysis.audit.designs import (
    collapse,
    depth_best,
    rescored_equivalent,
    sensitivity_classes,
    sweep_best,
    sweep_equivalent,
    sweep_order,
    sweep_trend,
)
from analysis.audit.evidence import Part
from analysis.audit.structural import (
    fingerprints_unchanged,
    interval_contains,
    interval_lower_at_least,
    invertible,
    order_note,
    order_robust,
    paper_best,
    parameter_overhead,
    router_ablation,
    routing_at_least,
    single_pass,
    welch_paper,
    zero_forgetting,
)

__all__ = ["EVALUATORS", "Context", "order_note"]

EVALUATORS: dict[str, Callable[[Context, dict[str, Any]], list[Part]]] = {
    "zero_forgetting": zero_forgetting,
    "fingerprints_unchanged": fingerprints_unchanged,
    "invertible": invertible,
    "single_pass": single_pass,
    "parameter_overhead": parameter_overhead,
    "welch_vs_paper": welch_paper,
    "interval_contains": interval_contains,
    "interval_lower_at_least": interval_lower_at_least,
    "routing_at_least": routing_at_least,
    "router_ablation": router_ablation,
    "ratio": ratio,
    "paired": paired,
    "forgetting_order": forgetting_order,
    "strategy_order": strategy_order,
    "ranking": ranking,
    "interaction": interaction,
    "simple_effects": simple_effects_parts,
    "depth_best": depth_best,
    "collapse": collapse,
    "sweep_best": sweep_best,
    "sweep_trend": sweep_trend,
    "sweep_order": sweep_order,
    "sweep_equivalent": sweep_equivalent,
    "rescored_equivalent": rescored_equivalent,
    "sensitivity_classes": sensitivity_classes,
    "order_robust": order_robust,
    "paper_best": paper_best,
    "against_bound": against_bound,
}
