"""Select the reduced studies' schedule on the validation copy of the generator.

``python -m benchmarks.select_reduced [--out FILE] [--workers 2] [--work DIR]``

The embedded default runs its studies other than the main one at a shorter schedule
than the CPU profile (`reduced` in ``config/config.yaml``: 128 px, on two categories, and
the strategies study's five-task pilot at the same schedule on five categories). Like
``benchmarks/select_profile.py`` it trains on ``moleflow synth --seed 1`` only (the
default dataset is seed 0), so nothing here looks at the default's test images.

Rule: for each of the two settings (the two-category ``reduced`` one and the five-category
pilot), every epochs level of :data:`EPOCHS` is trained with ``frozen_base``, seed 0, the
CPU profile at 128 px otherwise; the reference is the longest level at most
:data:`REFERENCE` epochs, and the chosen schedule is the shortest level whose score is
within 0.005 of the reference's (stage 3 of the profile selection, applied to these
settings; a level longer than the reference is listed to show whether longer training
would score higher). Score = (mean image AUROC + mean pixel AUROC) / 2 over the setting's
categories, routed. Writes ``benchmarks/REDUCED_SCHEDULE.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks.select_profile import MIN_GAIN, START, VALIDATION_SEED, _generate, _stage, selection_cli

EPOCHS = [3, 4, 6, 8]
REFERENCE = 6  # the schedule the reduced studies ran before this selection
SETTINGS = {
    "reduced (cap, pcb)": ["cap", "pcb"],
    "five-task pilot (cap, fabric, pcb, screw, tile)": ["cap", "fabric", "pcb", "screw", "tile"],
}
DEFAULT_OUT = Path(__file__).resolve().parent / "REDUCED_SCHEDULE.md"


def select(work: Path, workers: int) -> dict[str, dict[str, Any]]:
    """Train every level of every setting; return per setting its results, reference and choice."""
    root, cache = work / "data", work / "cache"
    _generate(root, [int(START["train"])])  # the default's 40 training images
    out: dict[str, dict[str, Any]] = {}
    for setting, categories in SETTINGS.items():
        candidates = {f"{setting}, epochs={e}": {**START, "input_size": 128, "epochs": e} for e in EPOCHS}
        results = _stage(candidates, root, cache, work, workers, {"dataset.categories": categories})
        by_epochs = {r["levels"]["epochs"]: r for r in results.values() if r["status"] == "ok"}
        reference, chosen = choose({e: r["score"] for e, r in by_epochs.items()})
        out[setting] = {"results": by_epochs, "reference": reference, "chosen": chosen}
    return out


def choose(scores: dict[int, float], reference_epochs: int = REFERENCE, tolerance: float = MIN_GAIN) -> tuple[int, int]:
    """``(reference, chosen)`` epochs: the reference is the longest level at most ``reference_epochs``;
    the chosen one the shortest level up to it scoring within ``tolerance`` of it."""
    reference = max(e for e in scores if e <= reference_epochs)
    close = [e for e in scores if e <= reference and scores[e] >= scores[reference] - tolerance]
    return reference, min(close)


def report(selection: dict[str, dict[str, Any]], seconds: float) -> str:
    """The selection as Markdown."""
    trained = sum(
        r["train_s_per_task"] * len(SETTINGS[setting])
        for setting, sel in selection.items()
        for r in sel["results"].values()
    )
    lines = [
        "# Reduced studies' schedule",
        "",
        f"Produced by `python -m benchmarks.select_reduced` on the validation copy of the generator "
        f"(`moleflow synth --seed {VALIDATION_SEED}`; the embedded default is seed 0); the runs trained for {trained:.0f} s "
        f"in all (one thread per run, two at a time; this invocation took {seconds:.0f} s, reusing finished runs of "
        "`--work`). n = 1 run (seed 0) per level; CPU profile at 128 px, "
        "`frozen_base`, routed.",
        "",
        "Rule: " + __doc__.split("Rule: ")[1].split("Writes")[0].strip().replace("\n", " "),
        "",
    ]
    for setting, sel in selection.items():
        cats = sorted(next(iter(sel["results"].values()))["per_category"])
        lines += [
            f"## {setting}",
            "",
            "| epochs | "
            + " | ".join(f"I-AUROC {c}" for c in cats)
            + " | mean I-AUROC | mean P-AUROC | score | s/task | |",
            "|---" * (len(cats) + 6) + "|",
        ]
        for epochs, r in sorted(sel["results"].items()):
            mark = "**chosen**" if epochs == sel["chosen"] else ("reference" if epochs == sel["reference"] else "")
            lines.append(
                f"| {epochs} | "
                + " | ".join(f"{r['per_category'][c]:.3f}" for c in cats)
                + f" | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | {r['score']:.5f} "
                f"| {r['train_s_per_task']:.1f} | {mark} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return selection_cli(
        argv,
        "select_reduced",
        __doc__,
        DEFAULT_OUT,
        lambda work, args, seconds: report(select(work, args.workers), seconds()),
    )


if __name__ == "__main__":
    sys.exit(main())
