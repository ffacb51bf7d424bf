"""Select the CPU profile's schedule and sizes on a validation copy of the generator.

``python -m benchmarks.select_profile [--out FILE] [--workers 2] [--budget 30]``

Nothing here looks at the embedded default's test images: the candidates are trained
and scored on ``moleflow synth --seed 1`` (the default dataset is seed 0), whose
training images, test images and masks are all different draws. The search covers the
four levers of the profile:

* the schedule (epochs per task, the stopping rule: a fixed count, the last state kept),
* the generated training-set size (normal training images per category),
* the embedding width ``D``,
* the input size (the anomaly maps' smoothing scales with it),
* the learning rate (the paper's 3e-4 against the start's 1e-3).

Rule: stage 1 varies one lever at a time from the start point; stage 2 runs every
combination of each lever's start level and its best stage-1 level (a level counts only
if it raises the score by more than 0.005 over the start); the chosen candidate is the
one with the highest score among all candidates whose training time per task (one
thread) is within the budget, which comes from the main command's 20-minute limit (the
main study trains 18 tasks); stage 3 shortens the chosen candidate's schedule to each
shorter epochs level and keeps the shortest whose score is within 0.005 of it (a
shorter schedule is cheaper, and on this data longer training is not better). Score = (mean image AUROC + mean pixel AUROC) / 2 over the six categories,
routed, ``frozen_base``, seed 0 of the run. The ``knn`` reference on the same
validation data is listed beside it. Writes ``benchmarks/PROFILE_SELECTION.md``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

VALIDATION_SEED = 1
START: dict[str, Any] = {"epochs": 30, "train": 40, "embed_dim": 128, "input_size": 128, "lr": 0.001}
LEVELS: dict[str, list[Any]] = {
    "epochs": [10, 20, 30, 60],
    "train": [40, 120],
    "embed_dim": [64, 128, 256],
    "input_size": [128, 160],
    "lr": [0.0003, 0.001],
}
MIN_GAIN = 0.005
DEFAULT_OUT = Path(__file__).resolve().parent / "PROFILE_SELECTION.md"


def overrides(levels: dict[str, int], root: Path, cache: Path) -> dict[str, Any]:
    """Run-config overrides of a candidate (every searched key set explicitly)."""
    size = levels["input_size"]
    return {
        "dataset.root": str(root / f"train{levels['train']}"),
        "features.cache_dir": str(cache),
        "features.resize": size,
        "features.input_size": size,
        "features.embed_dim": levels["embed_dim"],
        "training.epochs": levels["epochs"],
        "training.lr": levels["lr"],
        "scoring.map_sigma": 2.0 * size / 128,
        "evaluation.sample_images": 0,
    }


def _run_candidate(job: tuple[str, dict[str, Any], str]) -> dict[str, Any]:
    """Train and score one candidate in a worker process (one torch thread)."""
    import torch

    from moleflow.config import apply_overrides, load_profile
    from moleflow.continual import run

    torch.set_num_threads(1)
    name, sets, out = job
    summary = run(apply_overrides(load_profile("cpu"), sets), out, progress=False, log=lambda *a: None)
    routed = summary["mean"]["routed"]
    per_task = summary["timings"]["training"] / max(1, summary["tasks_completed"])
    return {
        "name": name,
        "status": summary["status"],
        "image_auroc": routed["image_auroc"],
        "pixel_auroc": routed["pixel_auroc"],
        "pixel_ap": routed["pixel_ap"],
        "score": (routed["image_auroc"] + routed["pixel_auroc"]) / 2,
        "per_category": {c: v["routed"]["image_auroc"] for c, v in summary["final"].items()},
        "train_s_per_task": per_task,
        "train_s": summary["timings"]["training"],
        "diagnostics": [t["input_collapse"] for t in summary["per_task"] if t.get("input_collapse")],
        "losses": [t["epoch_losses"][-1] for t in summary["per_task"] if t["epoch_losses"]],
    }


def _generate(root: Path, trains: list[int] | None = None) -> None:
    """Validation copies ``root/train<N>`` for each training-set size ``N`` (the generator is a pure
    function of (seed, category, split, index), so the test sets of all copies are identical)."""
    trains = LEVELS["train"] if trains is None else trains
    from moleflow.data.synth import SynthCounts, generate

    for train in trains:
        generate(
            root / f"train{train}",
            seed=VALIDATION_SEED,
            size=128,
            categories=None,
            counts=SynthCounts(train=train, test_good=10, test_per_defect=6),
        )


def _prefetch(jobs: list[tuple[str, dict[str, Any], str]]) -> None:
    """Extract every feature entry once in this process (workers then only read the cache)."""
    from moleflow.config import apply_overrides, load_profile
    from moleflow.continual.tasks import load_tasks
    from moleflow.features import FeatureStore

    seen = set()
    for _, sets, _ in jobs:
        key = (sets["dataset.root"], sets["features.input_size"], sets["features.embed_dim"])
        if key not in seen:
            seen.add(key)
            config = apply_overrides(load_profile("cpu"), sets)
            load_tasks(config, FeatureStore(config, progress=False))


def _stage(
    candidates: dict[str, dict[str, Any]],
    root: Path,
    cache: Path,
    work: Path,
    workers: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    jobs = [
        (name, {**overrides(levels, root, cache), **(extra or {})}, str(work / name.replace(" ", "_")))
        for name, levels in candidates.items()
    ]
    _prefetch(jobs)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_run_candidate, jobs))
    for result in results:
        print(
            f"[select] {result['name']}: score {result['score']:.4f} ({result['train_s_per_task']:.1f} s/task)",
            file=sys.stderr,
            flush=True,
        )
    return {r["name"]: {**r, "levels": candidates[r["name"]]} for r in results}


def _name(levels: dict[str, int]) -> str:
    changed = [f"{k}={v}" for k, v in levels.items() if v != START[k]]
    return ", ".join(changed) or "start"


def select(work: Path, workers: int, budget: float) -> tuple[dict[str, dict[str, Any]], str, dict[str, Any]]:
    """Run both stages; return every result, the chosen name and the knn reference."""
    root, cache = work / "data", work / "cache"
    _generate(root)
    stage1 = {"start": dict(START)}
    for lever, levels in LEVELS.items():
        for level in levels:
            if level != START[lever]:
                cand = {**START, lever: level}
                stage1[_name(cand)] = cand
    results = _stage(stage1, root, cache, work, workers)
    improving = {}
    for lever in LEVELS:
        options = [
            (r["score"], r["levels"][lever])
            for r in results.values()
            if r["status"] == "ok" and all(r["levels"][k] == START[k] for k in LEVELS if k != lever)
        ]
        top_score, top_level = max(options)
        improving[lever] = [START[lever]] + ([top_level] if top_score > results["start"]["score"] + MIN_GAIN else [])
    stage2 = {}
    for combo in itertools.product(*improving.values()):
        cand = dict(zip(LEVELS, combo))
        if _name(cand) not in results:
            stage2[_name(cand)] = cand
    if stage2:
        results.update(_stage(stage2, root, cache, work, workers))
    within = {n: r for n, r in results.items() if r["status"] == "ok" and r["train_s_per_task"] <= budget}
    chosen = max(within, key=lambda n: within[n]["score"])
    shorter = {
        _name(c): c
        for c in ({**results[chosen]["levels"], "epochs": e} for e in LEVELS["epochs"])
        if c["epochs"] < results[chosen]["levels"]["epochs"]
    }
    if shorter:  # stage 3: the stopping rule for the chosen levels
        results.update(_stage({n: c for n, c in shorter.items() if n not in results}, root, cache, work, workers))
        close = [
            n
            for n in shorter
            if results[n]["status"] == "ok" and results[n]["score"] >= results[chosen]["score"] - MIN_GAIN
        ]
        if close:
            chosen = min(close, key=lambda n: results[n]["levels"]["epochs"])
    name = f"knn ({chosen})"  # its own run directory for every chosen candidate
    knn = _stage({name: results[chosen]["levels"]}, root, cache, work, workers, {"strategy.name": "knn"})[name]
    return results, chosen, knn


def report(results: dict[str, dict[str, Any]], chosen: str, knn: dict[str, Any], budget: float, seconds: float) -> str:
    """The selection as Markdown."""
    cats = sorted(results[chosen]["per_category"])
    head = [
        "# CPU profile selection",
        "",
        f"Produced by `python -m benchmarks.select_profile` on a validation copy of the generator "
        f"(`moleflow synth --seed {VALIDATION_SEED}`; the embedded default is seed 0); the candidates trained for "
        f"{sum(r['train_s_per_task'] * 6 for r in results.values()):.0f} s in all (one thread each, two at a time; "
        f"this invocation took {seconds:.0f} s, reusing finished candidates of `--work`). n = 1 run (seed 0) per "
        f"candidate. Training seconds per task with one thread; budget {budget:g} s. Start: "
        + ", ".join(f"{k} {v}" for k, v in START.items())
        + ".",
        "",
        "Rule: " + __doc__.split("Rule: ")[1].split("Writes")[0].strip().replace("\n", " "),
        "",
        "| candidate | "
        + " | ".join(f"I-AUROC {c}" for c in cats)
        + " | mean I-AUROC | mean P-AUROC | mean P-AP | score | s/task | chosen |",
        "|---" * (len(cats) + 7) + "|",
    ]
    rows = []
    for name, r in list(results.items()) + [("knn reference (same levels, no training)", knn)]:
        mark = (
            "**yes**"
            if name == chosen
            else ("over budget" if r["train_s_per_task"] > budget and name in results else "")
        )
        rows.append(
            f"| {name} | "
            + " | ".join(f"{r['per_category'].get(c, float('nan')):.3f}" for c in cats)
            + f" | {r['image_auroc']:.3f} | {r['pixel_auroc']:.3f} | {r['pixel_ap']:.3f} | {r['score']:.4f} "
            f"| {r['train_s_per_task']:.1f} | {mark} |"
        )
    gap = [
        "",
        "Gap to the knn reference of the chosen candidate (image AUROC, knn - flow): "
        + ", ".join(f"{c} {knn['per_category'][c] - results[chosen]['per_category'][c]:+.3f}" for c in cats)
        + ".",
    ]
    return "\n".join(head + rows + gap) + "\n"


def main(argv: list[str] | None = None) -> int:
    return selection_cli(
        argv,
        "select_profile",
        __doc__,
        DEFAULT_OUT,
        lambda work, args, seconds: report(*select(work, args.workers, args.budget), args.budget, seconds()),
        budget=True,
    )


def selection_cli(
    argv: list[str] | None,
    name: str,
    doc: str | None,
    default_out: Path,
    produce: Callable[[Path, argparse.Namespace, Callable[[], float]], str],
    budget: bool = False,
) -> int:
    """The command line of a ``benchmarks.select_*`` module: ``--out``, ``--workers``, ``--work`` (and ``--budget``);
    ``produce(work folder, arguments, seconds so far)`` gives the Markdown, written by :func:`write_selection`."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=(doc or "").split("\n\n")[0])
    parser.add_argument("--out", default=str(default_out), help="Markdown file to write")
    parser.add_argument("--workers", type=int, default=2, help="runs trained at once (one thread each)")
    if budget:
        parser.add_argument("--budget", type=float, default=30.0, help="largest training time per task (s, one thread)")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    write_selection(args.out, args.work, lambda work: produce(work, args, lambda: time.perf_counter() - start))
    return 0


def write_selection(out: str, work: str | None, produce: Callable[[Path], str]) -> None:
    """Run ``produce(work folder)`` with one OpenMP thread per process in ``work`` (default: a
    temporary folder), then write its Markdown to ``out`` atomically and print it."""
    from moleflow.io import write_text_atomic

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        text = produce(Path(work or tmp))
    write_text_atomic(out, text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
