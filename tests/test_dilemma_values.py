"""Table 1 (the isolation-efficiency dilemma) cell by cell against hand computation: which runs it reads, its
columns and their directions and digits, memory in MB and in % of the base, and the zero-FM column's four
answers (yes, no, incomplete, not applicable)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis.render import NOT_APPLICABLE
from analysis.table_frames import CHAUDHRY
from analysis.tables import dilemma_table

NAN = float("nan")
FM = ["forgetting_fm_image_auroc", "forgetting_fm_pixel_auroc"]


def _run(
    variant: str, seed: int, auroc: float, fm: tuple[float, float], memory: tuple[float, float], **more: Any
) -> dict[str, Any]:
    """One run's row: its I-AUROC, Chaudhry FM of two metrics, memory per task (bytes, % of base)."""
    return {
        "study": "strategies", "dataset": "synth", "variant": variant, "seed": seed, "run_id": f"{variant}{seed}",
        "status": "ok", "image_auroc_routed": auroc, FM[0]: fm[0], FM[1]: fm[1],
        "forgetting_paper_image_auroc": fm[0] / 2, "memory_bytes_per_task": memory[0], "memory_pct_of_base": memory[1],
        "forgetting_fm_aupro": None,  # a metric no run of the study makes: a column of None (object dtype)
        **more,
    }  # fmt: skip


def _frame() -> pd.DataFrame:
    rows = [  # rows without an answer or with n/a first: the rows after them are still answered
        _run("frozen_base", 0, 0.90, (0.0, 0.0), (2_500_000.0, 4.0)),
        _run("ewc", 0, NAN, (NAN, NAN), (NAN, NAN), status="diverged"),  # no finished run: no zero-FM answer
        _run("joint", 0, 0.85, (NAN, NAN), (9_000_000.0, 0.0)),  # trained once: no forgetting
        _run("frozen_base", 1, 0.80, (0.0, 0.0), (2_500_000.0, 4.0)),
        _run("sequential", 0, 0.70, (0.2, 0.0), (1_000_000.0, 2.0)),
        _run("sequential", 1, 0.60, (0.0, 0.1), (3_000_000.0, 6.0)),
        _run("dne", 0, 0.75, (0.0, NAN), (500_000.0, NAN)),  # no pixel metric: that column is left out
        _run("replay", 0, 0.65, (0.0, 0.0), (4_000_000.0, 8.0)),
        _run("replay", 1, 0.66, (NAN, 0.0), (4_000_000.0, 8.0)),  # a finished run without one value
    ]
    noise = _run("frozen_base", 2, 0.0, (0.5, 0.5), (1.0, 99.0))
    rows += [{**noise, "study": "pilot"}, {**noise, "dataset": "other"}]  # another study's and another dataset's
    return pd.DataFrame(rows)


def test_the_dilemma_reads_its_study_and_dataset_and_names_its_columns() -> None:
    spec = dilemma_table(_frame(), "synth")
    assert (spec.table_id, spec.paper_table, spec.title) == (
        "T1_dilemma_synth",
        "1",
        "Isolation-efficiency dilemma (synth)",
    )
    assert spec.rows == ["frozen_base", "ewc", "joint", "sequential", "dne", "replay"]
    labels = ["I-AUROC", "FM I-AUROC", "FM I-AUROC (paper)", "memory/task (% base)", "memory/task (MB)"]
    assert spec.columns == [*labels, "zero FM"]
    assert spec.better == dict(zip(labels, ["max", "min", "min", "min", "min"]))
    assert spec.column_digits == {"memory/task (% base)": 1} and spec.row_header == "variant"
    cell = spec.cells[("frozen_base", "I-AUROC")]
    assert (cell.mean, cell.std, cell.n) == (pytest.approx(0.85), pytest.approx(np.std([0.9, 0.8], ddof=1)), 2)
    assert spec.cells[("sequential", "FM I-AUROC")].mean == pytest.approx(0.1)
    assert spec.cells[("sequential", "FM I-AUROC (paper)")].mean == pytest.approx(0.05)
    assert spec.cells[("frozen_base", "memory/task (MB)")].mean == 2.5  # bytes / 1e6, exactly
    assert spec.cells[("sequential", "memory/task (MB)")].mean == pytest.approx(2.0)
    assert spec.cells[("sequential", "memory/task (% base)")].mean == pytest.approx(4.0)
    assert spec.cells[("dne", "memory/task (MB)")].mean == pytest.approx(0.5)
    assert spec.cells[("ewc", "I-AUROC")].text == "diverged"
    assert "seeds [0, 1]" in spec.caption  # the other study's seed 2 is not read
    assert spec.caption.startswith("Isolation-efficiency dilemma. Mean and standard deviation over seeds [0, 1]")
    assert spec.caption.endswith(
        " Memory per task: what each new task adds to what the strategy keeps (float32 parameters; Full-Copy a whole "
        "model, the others the task's adapters, Replay also its buffer of float16 feature maps; EWC keeps its Fisher "
        "and anchor once; the kNN reference its memory bank of float32 patch vectors and no base; DNE its Gaussian of "
        "the image embeddings, float64, and no base; the joint flow every task's training feature maps, float16, "
        "since it trains on all of them at once, its one model counted as the base). Zero FM = forgetting exactly 0 "
        f"for every metric in every finished run. {CHAUDHRY}; FM (paper): mean over earlier tasks of R[i,i] - R[T-1,i]."
    )


def test_zero_fm_is_yes_no_incomplete_or_not_applicable() -> None:
    spec = dilemma_table(_frame(), "synth")
    zero = {row: spec.cells[(row, "zero FM")].text for row in spec.rows if (row, "zero FM") in spec.cells}
    assert zero == {
        "frozen_base": "yes",  # every metric 0 in every finished run
        "sequential": "no",  # one run forgot one metric
        "dne": "yes",  # its pixel metric made by no run is left out, not "incomplete"
        "replay": "incomplete",  # a finished run lacks a value: not evidence of zero
        "joint": NOT_APPLICABLE,  # trained once
    }  # ewc: no finished run, no answer


def test_the_pilot_study_is_read_when_asked() -> None:
    frame = _frame()
    spec = dilemma_table(frame, "synth", study="pilot")
    assert spec.rows == ["frozen_base"] and spec.cells[("frozen_base", "memory/task (MB)")].mean == pytest.approx(1e-6)
    assert spec.cells[("frozen_base", "zero FM")].text == "no"
    other = dilemma_table(frame, "other")  # the other dataset's one run
    assert other.rows == ["frozen_base"] and other.cells[("frozen_base", "I-AUROC")].mean == 0.0
