"""The flow's objective on the validation copy: the collapse rule, the joint flow's schedule, the bounded schedule.

``python -m benchmarks.select_objective [--out FILE] [--workers 2] [--work DIR]``

Like ``benchmarks/select_profile.py`` it trains on ``moleflow synth --seed 1`` only (the
embedded default is seed 0), with the CPU profile as selected (160 px, six categories,
seed 0 of the run), and never reads the default's test images. Three questions, each
answered by runs of the same kind as the profile's schedule stage:

* MoLE-Flow under the paper's objective (``model.input_jacobian: excluded``) at each epochs
  level of the profile's search (10, 20, 30, 60): the input-collapse diagnostic of every
  task along the schedule the profile selection found "longer training is worse" on;
* MoLE-Flow under the bounded likelihood (``included``) at the same levels: the schedule
  stage of the profile selection rerun for it;
* the joint flow (``strategy.name: joint``) at 2, 5, 10, 20 and 30 epochs (30: the
  profile's, 1,800 optimiser steps on six categories' patches at once), and with the
  bounded likelihood at 5 and 30 epochs.

Rule for the joint flow's schedule: the epochs level with the highest score, the shortest
level within 0.005 of it when several are (stage 3 of the profile selection). Score =
(mean image AUROC + mean pixel AUROC) / 2 over the six categories, routed. The collapse
rule (:func:`moleflow.continual.structure.collapsed`) is chosen from the diagnostics
listed here, as the report states. Writes ``benchmarks/OBJECTIVE.md``.
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.select_profile import (
    MIN_GAIN,
    VALIDATION_SEED,
    _generate,
    _prefetch,
    _run_candidate,
    overrides,
    selection_cli,
)
from moleflow.continual.structure import LOGVOLUME_LIMIT, collapsed

PROFILE: dict[str, Any] = {"epochs": 30, "train": 40, "embed_dim": 128, "input_size": 160, "lr": 0.001}
FLOW_EPOCHS = [10, 20, 30, 60]
JOINT_EPOCHS = [2, 5, 10, 20, 30]
JOINT_BOUNDED = [5, 30]
DEFAULT_OUT = Path(__file__).resolve().parent / "OBJECTIVE.md"


def candidates() -> dict[str, dict[str, Any]]:
    """Every candidate: name -> run-config overrides beyond the profile's levels (and its epochs)."""
    out: dict[str, dict[str, Any]] = {}
    for objective in ("excluded", "included"):
        for epochs in FLOW_EPOCHS:
            out[f"MoLE-Flow, {objective}, {epochs} epochs"] = {
                "epochs": epochs,
                "model.input_jacobian": objective,
            }
    for epochs in JOINT_EPOCHS:
        out[f"joint flow, excluded, {epochs} epochs"] = {"epochs": epochs, "strategy.name": "joint"}
    for epochs in JOINT_BOUNDED:
        out[f"joint flow, included, {epochs} epochs"] = {
            "epochs": epochs,
            "strategy.name": "joint",
            "model.input_jacobian": "included",
        }
    return out


def select(work: Path, workers: int) -> dict[str, dict[str, Any]]:
    """Train every candidate (two at a time); return the results by name."""
    root, cache = work / "data", work / "cache"
    _generate(root, [PROFILE["train"]])
    jobs = []
    for name, extra in candidates().items():
        levels = {**PROFILE, "epochs": extra["epochs"]}
        sets = {**overrides(levels, root, cache), **{k: v for k, v in extra.items() if k != "epochs"}}
        jobs.append((name, sets, str(work / name.replace(" ", "_").replace(",", ""))))
    _prefetch(jobs)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_run_candidate, jobs))
    for r in results:
        print(f"[objective] {r['name']}: score {r['score']:.4f}, {r['train_s']:.0f} s", file=sys.stderr, flush=True)
    return {r["name"]: r for r in results}


def joint_choice(results: dict[str, dict[str, Any]]) -> int:
    """The joint flow's epochs by the rule (the highest score; the shortest within ``MIN_GAIN`` of it)."""
    scores = {e: results[f"joint flow, excluded, {e} epochs"]["score"] for e in JOINT_EPOCHS}
    best = max(scores.values())
    return min(e for e, s in scores.items() if s >= best - MIN_GAIN)


def _fmt(value: Any, digits: int = 3) -> str:
    return "--" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def report(results: dict[str, dict[str, Any]], seconds: float) -> str:
    """The runs and the choices as Markdown."""
    chosen = joint_choice(results)
    lines = [
        "# The flow's objective on the validation copy",
        "",
        f"Produced by `python -m benchmarks.select_objective` on the validation copy of the generator "
        f"(`moleflow synth --seed {VALIDATION_SEED}`; the embedded default is seed 0): the CPU profile as selected "
        f"(160 px, D = 128, 40 training images per category, lr 1e-3), six categories, run seed 0, n = 1 run per "
        f"row; training took {sum(r['train_s'] for r in results.values()):.0f} s in all (one thread per run, two "
        f"at a time; this invocation {seconds:.0f} s).",
        "",
        "Rule for the joint flow's schedule: "
        + __doc__.split("joint flow's schedule: ")[1].split("Writes")[0].strip().replace("\n", " "),
        "",
        "| run | mean I-AUROC | mean P-AUROC | mean P-AP | score | last loss / patch (task 0) | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | {r['pixel_ap']:.3f} | {r['score']:.4f} "
            f"| {_fmt(r['losses'][0] if r['losses'] else None, 4)} | {r['train_s']:.0f} |"
        )
    lines += [
        "",
        f"Joint flow's schedule by the rule: **{chosen} epochs**.",
        "",
        f"Collapse rule (`moleflow.continual.structure.collapsed`): the input maps' log-volume per patch and "
        f"channel below {LOGVOLUME_LIMIT:g}. The column 'per channel' below is that figure; the rule's limit lies "
        "between the healthy runs (every MoLE-Flow task, at every schedule and objective) and the joint flow's runs "
        "at chance.",
        "",
        "## The input-collapse diagnostic of every trained task",
        "",
        "Per task: the trainable input maps' log-volume per patch (mixer, whitening affine, their sum), the mixer's "
        "gate and mean coefficient of a patch on itself, the flow input's median covariance eigenvalue over the "
        "features', the training, normal-test and defect patches' mean NLL and the separation "
        "((defect - normal) / normal SD).",
        "",
        "| run | task | mixer | whitening | sum | per channel | gate | self coeff. | eig ratio | NLL train "
        "| NLL normal | NLL defect | separation | collapsed |",
        "|---" * 14 + "|",
    ]
    for name, r in results.items():
        for task, d in enumerate(r["diagnostics"]):
            per_channel = d["input_logdet"] / PROFILE["embed_dim"]
            lines.append(
                f"| {name} | {task} | {_fmt(d['mixer_logdet'])} | {_fmt(d['whitening_logdet'])} "
                f"| {_fmt(d['input_logdet'])} | {per_channel:.2f} | {_fmt(d['mixer_gate'])} "
                f"| {_fmt(d['mixer_self_coefficient'])} | {_fmt(d['eig_median_ratio'])} | {_fmt(d['nll_train'])} "
                f"| {_fmt(d['nll_good'])} | {_fmt(d['nll_defect'])} | {_fmt(d['separation'])} "
                f"| {'**yes**' if collapsed(per_channel) else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return selection_cli(
        argv,
        "select_objective",
        __doc__,
        DEFAULT_OUT,
        lambda work, args, seconds: report(select(work, args.workers), seconds()),
    )


if __name__ == "__main__":
    sys.exit(main())
