"""Helpers shared by several test modules."""

from __future__ import annotations

import copy


def fake_summary(index: int) -> dict:
    """A minimal run summary (one task) with distinct numbers and config hash per ``index``."""
    config = {"seed": index, "training": {"epochs": 1}}
    matrix = {m: [[0.5 + index / 100]] for m in ("image_auroc", "pixel_ap", "pixel_auroc", "aupro")}
    forgetting = {m: {"fm": None, "paper": None, "bwt": None} for m in matrix}
    return {
        "status": "ok", "config": config, "config_hash": f"hash{index:03d}", "seed": index, "strategy": "frozen_base",
        "tasks": ["cap"], "tasks_completed": 1, "accuracy_matrix": matrix, "accuracy_matrix_oracle": copy.deepcopy(matrix),
        "mean": {mode: {m: 0.5 + index / 100 for m in matrix} for mode in ("routed", "oracle")},
        "forgetting": forgetting, "routing_accuracy": 1.0, "routing_accuracy_after_task": [1.0],
        "per_task": [{"task": 0, "epoch_losses": [3.0]}], "timings": {"training": 1.0, "training_per_task": [1.0]},
    }


def interrupted_then_resumed(config: dict, out, monkeypatch, at_task: int = 2) -> tuple[dict, list[str]]:  # type: ignore[no-untyped-def]
    """Run ``config`` into ``out``, interrupted when task ``at_task`` starts training, then run it again.

    Checks that the interrupted run left no summary and says ``interrupted`` in
    ``status.json``; returns the resumed run's summary and its log lines.
    """
    import json

    import pytest

    import moleflow.continual.experiment as experiment
    from moleflow.continual import run

    real = experiment.train_task

    def killed(learner, task, *args, **kwargs):  # type: ignore[no-untyped-def]
        if task == at_task:
            raise KeyboardInterrupt
        return real(learner, task, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_task", killed)
    with pytest.raises(KeyboardInterrupt):
        run(config, out, progress=False, log=lambda *a: None)
    assert not (out / "summary.json").exists()
    assert json.loads((out / "status.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(experiment, "train_task", real)
    messages: list[str] = []
    return run(config, out, progress=False, log=messages.append), messages


def per_task_by_formula(dim: int, blocks: int, rank: int, dia: int) -> int:
    """Closed formula of a task's adapters (hidden width D): in each coupling block the subnet's four linears
    (s: D -> D -> D/2 on [x1; ctx], t: D/2 -> D -> D/2) each get LoRA A, B (rank x (in + out)) and a task bias (out);
    the whitening adapter gamma and beta (2 D); each DIA block two MLPs of three D/2 x D/2 linears with biases."""
    half = dim // 2
    linears = [(dim, dim), (dim, half), (half, dim), (dim, half)]
    lora = blocks * sum(rank * (i + o) + o for i, o in linears)
    return lora + 2 * dim + dia * 2 * 3 * (half * half + half)


def scores_of_task0_after_each_task(config: dict) -> tuple[list, object]:
    """Task 0's test image scores and maps after training each task of ``config`` in one process, and the learner."""
    import numpy as np
    import torch

    from moleflow.continual import Learner
    from moleflow.continual.evaluate import score_rows
    from moleflow.continual.settings import ScoreSettings, TrainSettings
    from moleflow.continual.tasks import load_tasks
    from moleflow.continual.train import train_task
    from moleflow.features import FeatureStore

    cpu = torch.device("cpu")
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner(config, tasks[0].train.patches.shape[-1])
    rows = np.arange(len(tasks[0].test.labels))
    out = []
    for task, data in enumerate(tasks):
        learner.add_task(np.asarray(data.train.router))
        assert train_task(learner, task, data.train.patches, TrainSettings.from_config(config), cpu).status == "ok"
        scored = score_rows(learner, 0, tasks[0].test.patches, rows, ScoreSettings.from_config(config), cpu)
        out.append(np.concatenate([scored.image, scored.maps.ravel()]))
    return out, learner


def three_category_synth(root):  # type: ignore[no-untyped-def]
    """A generated dataset of cap, tile and screw at 64 px (6 training, 3 good and 2 per defect test images each)."""
    from moleflow.data.synth import SynthCounts, generate

    generate(root, seed=0, size=64, categories=["cap", "tile", "screw"], counts=SynthCounts(train=6, test_good=3, test_per_defect=2))
    return root


def tiny_config(dataset, cache, *extra: str) -> dict:  # type: ignore[no-untyped-def]
    """The CPU profile at 64 px with 16-d patches on ``dataset``, on the CPU, and ``extra`` overrides."""
    from moleflow.config import load_config, load_profile

    return load_config(overrides=[f"dataset.root={dataset}", f"features.cache_dir={cache}", "features.resize=64",
                                  "features.input_size=64", "features.embed_dim=16", "scoring.map_sigma=1.0",
                                  "device=cpu", *extra], base=load_profile("cpu"))
