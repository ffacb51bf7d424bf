"""Which tables a study feeds: its ``tables`` key, read from the plan record, not its name.

Each key a study may list (the workflow schema's enum of ``studies.*.tables``) names one builder here,
:data:`TABLES`; a study gets every table its key names, for every dataset it has runs on, so a new or
renamed study gets its tables by declaring them. Keys that name the same table for different datasets
(``T3``/``T5``: I-AUROC per category on MVTec AD / VisA) share a builder, built once per dataset. When two
studies feed the same table, the later one's file stems end in ``_<study>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis import sweeps
from analysis.interaction import interaction_table
from analysis.overview_tables import category_model_table, configuration_table, dataset_summary, forgetting_table
from analysis.render import TableSpec, ordered
from analysis.table_frames import CHAUDHRY, METRIC_LABELS, run_level
from analysis.tables import (
    dilemma_table,
    literature_kinds,
    main_runs,
    objective_table,
    per_category_table,
    variant_table,
)


@dataclass
class Inputs:
    """What every builder may read: the per-category ``frame``, its run-level ``runs``, the datasets' literature
    kinds (real MVTec AD / VisA get the paper's reported rows) and the runs' resolved ``configs``."""

    frame: pd.DataFrame
    runs: pd.DataFrame
    kinds: dict[str, str | None]
    configs: dict[str, dict[str, Any]]


#: ``(inputs, study, dataset) -> tables``; ``dataset`` is ``None`` for a table over every dataset.
Builder = Callable[[Inputs, str, "str | None"], list[TableSpec]]
_ROUTED_TWO = {"image_auroc_routed": "I-AUROC", "pixel_ap_routed": "P-AP"}


def _per_category(metric: str, stem: str, label: str) -> Builder:
    def build(x: Inputs, study: str, dataset: str | None) -> list[TableSpec]:
        assert dataset is not None
        return [per_category_table(x.frame, dataset, metric, f"{stem}_{dataset}", label, x.kinds.get(dataset), study)]

    return build


def _forgetting(x: Inputs, study: str, dataset: str | None) -> list[TableSpec]:
    assert dataset is not None
    return [forgetting_table(x.frame, dataset, f"T15_forgetting_{dataset}", study)]


def _dilemma(x: Inputs, study: str, dataset: str | None) -> list[TableSpec]:
    assert dataset is not None
    return [dilemma_table(x.runs, dataset, study)]


def _variants(stem: str, label: str, title: str, metrics: dict[str, str] | None, delta: bool) -> Builder:
    def build(x: Inputs, study: str, dataset: str | None) -> list[TableSpec]:
        assert dataset is not None
        columns = metrics or {f"{m}_routed": lab for m, lab in METRIC_LABELS.items()}
        delta_of = ("image_auroc_routed", "pixel_ap_routed") if delta else ()
        return [
            variant_table(x.runs, study, dataset, f"{stem}_{study}_{dataset}", label, title, columns, delta_of=delta_of)
        ]

    return build


def _sensitivity(x: Inputs, study: str, dataset: str | None) -> list[TableSpec]:
    assert dataset is not None
    return sweeps.build(x.runs, dataset, study)


def _order(x: Inputs, study: str, dataset: str | None) -> list[TableSpec]:
    assert dataset is not None
    sub = x.runs[(x.runs["study"] == study) & (x.runs["dataset"] == dataset)].copy()
    sub["variant"] = sub["order"]
    metrics = {**_ROUTED_TWO, "forgetting_fm_image_auroc": "FM I-AUROC"}
    spec = variant_table(sub, study, dataset, f"{study}_{dataset}", "order", "Class-order sensitivity", metrics)
    spec.caption += f" {CHAUDHRY}"
    return [spec]


def _objective(x: Inputs, study: str, dataset: str | None) -> list[TableSpec]:
    assert dataset is not None
    return [objective_table(x.runs, dataset, study)]


def _interaction(x: Inputs, study: str, dataset: str | None) -> list[TableSpec]:
    assert dataset is not None
    return [interaction_table(x.runs, dataset, study=study)]


def _configuration(x: Inputs, study: str, dataset: str | None) -> list[TableSpec]:
    return [configuration_table(x.configs, main_runs(x.runs, study))] if x.configs else []


def _summary(x: Inputs, study: str, dataset: str | None) -> list[TableSpec]:
    return [dataset_summary(x.runs, study), category_model_table(x.frame[x.frame["status"].notna()], study)]


_T3 = _per_category("image_auroc", "T3_image_auroc", "3/5")
_T4 = _per_category("pixel_ap", "T4_pixel_ap", "4/6")
_T7 = _variants("T7", "7", "Component ablation", None, delta=True)
_T9 = _variants("T9", "9", "Depth (MoLE and DIA blocks)", _ROUTED_TWO, delta=False)
_T14 = _variants("T14", "14", "Training strategies", _ROUTED_TWO, delta=True)

#: Table key -> (builder, per dataset). The order is the order the tables are written in.
TABLES: dict[str, tuple[Builder, bool]] = {
    "T2": (_configuration, False),
    "T3": (_T3, True),
    "T5": (_T3, True),
    "T4": (_T4, True),
    "T6": (_T4, True),
    "T15": (_forgetting, True),
    "T1": (_dilemma, True),
    "T14": (_T14, True),
    "T7": (_T7, True),
    "T9": (_T9, True),
    "T10": (_sensitivity, True),
    "T11": (_sensitivity, True),
    "T12": (_sensitivity, True),
    "T13": (_sensitivity, True),
    "order": (_order, True),
    "objective": (_objective, True),
    "T8": (_interaction, True),
    "T16": (_summary, False),
}


def declared_tables(plan: dict[str, Any] | None) -> dict[str, list[str]]:
    """Study -> the table keys it declares (the plan record's ``tables``; none recorded: none)."""
    return {study: list(keys) for study, keys in ((plan or {}).get("tables") or {}).items()}


def _builders(declared: dict[str, list[str]]) -> list[tuple[Builder, bool, list[str]]]:
    """Each builder once, in :data:`TABLES`' order, with the studies (sorted) that declare one of its keys."""
    out: list[tuple[Builder, bool, list[str]]] = []
    for key, (builder, per_dataset) in TABLES.items():
        studies = sorted(s for s, keys in declared.items() if key in keys)
        known = next((entry for entry in out if entry[0] is builder), None)
        if known is None:
            out.append((builder, per_dataset, studies))
        else:
            known[2].extend(s for s in studies if s not in known[2])
            known[2].sort()
    return out


def build_all(
    frame: pd.DataFrame, plan: dict[str, Any] | None = None, configs: dict[str, dict[str, Any]] | None = None
) -> list[TableSpec]:
    """Every table the studies declare that their collected runs support (a study without runs on a dataset gives
    no table of it). ``plan``: the plan record (the studies' tables, and which datasets are real: literature rows
    only for real MVTec AD / VisA); ``configs`` (run id -> resolved config) gives Table 2."""
    runs = run_level(frame[frame["status"].notna()])
    x = Inputs(frame, runs, literature_kinds(plan), configs or {})
    builders = _builders(declared_tables(plan))
    specs: list[TableSpec] = []
    seen: set[str] = set()

    def add(built: list[TableSpec], study: str) -> None:
        for spec in built:
            if spec.table_id in seen:  # a second study feeding the same table
                spec.table_id += f"_{study}"
            seen.add(spec.table_id)
            specs.append(spec)

    for builder, _, studies in (b for b in builders if not b[1]):
        if builder is _summary:
            continue  # the summaries close the list
        for study in studies:
            if study in set(runs["study"]):
                add(builder(x, study, None), study)
    for dataset in ordered(runs["dataset"]):
        present = set(runs[runs["dataset"] == dataset]["study"])
        for builder, per_dataset, studies in builders:
            for study in studies if per_dataset else []:
                if study in present:
                    add(builder(x, study, dataset), study)
    for study in next((b[2] for b in builders if b[0] is _summary), []):
        if study in set(runs["study"]):
            add(_summary(x, study, None), study)
    return specs
