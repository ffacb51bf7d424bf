"""Helpers shared by several test modules."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any


def fake_summary(index: int) -> dict:
    """A minimal run summary (one task) with distinct numbers and config hash per ``index``."""
    config = {"seed": index, "training": {"epochs": 1}}
    matrix = {m: [[0.5 + index / 100]] for m in ("image_auroc", "pixel_ap", "pixel_auroc", "aupro")}
    forgetting = {m: {"fm": None, "paper": None, "bwt": None} for m in matrix}
    return {
        "status": "ok",
        "config": config,
        "config_hash": f"hash{index:03d}",
        "seed": index,
        "strategy": "frozen_base",
        "tasks": ["cap"],
        "tasks_completed": 1,
        "accuracy_matrix": matrix,
        "accuracy_matrix_oracle": copy.deepcopy(matrix),
        "mean": {mode: {m: 0.5 + index / 100 for m in matrix} for mode in ("routed", "oracle")},
        "forgetting": forgetting,
        "routing_accuracy": 1.0,
        "routing_accuracy_after_task": [1.0],
        "per_task": [{"task": 0, "epoch_losses": [3.0]}],
        "timings": {"training": 1.0, "training_per_task": [1.0]},
    }


def interrupted_then_resumed(config: dict, out, monkeypatch, at_task: int = 2) -> tuple[dict, list[str]]:
    """Run ``config`` into ``out``, interrupted when task ``at_task`` starts training, then run it again.

    Checks that the interrupted run left no summary and says ``interrupted`` in
    ``status.json``; returns the resumed run's summary and its log lines.
    """
    import json

    import pytest

    import moleflow.continual.experiment as experiment
    from moleflow.continual import run

    real = experiment.train_task

    def killed(learner, task, *args, **kwargs):
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


def scores_of_task0_after_each_task(config: dict) -> tuple[list, Any]:
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
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    rows = np.arange(len(tasks[0].test.labels))
    out = []
    for task, data in enumerate(tasks):
        learner.add_task(np.asarray(data.train.router))
        assert train_task(learner, task, data.train.patches, TrainSettings.from_config(config), cpu).status == "ok"
        scored = score_rows(learner, 0, tasks[0].test.patches, rows, ScoreSettings.from_config(config), cpu)
        assert scored.maps is not None
        out.append(np.concatenate([scored.image, scored.maps.ravel()]))
    return out, learner


def tiny_config(dataset, cache, *extra: str) -> dict:
    """The CPU profile at 64 px with 16-d patches on ``dataset``, on the CPU, and ``extra`` overrides."""
    from moleflow.config import load_config, load_profile

    return load_config(
        overrides=[
            f"dataset.root={dataset}",
            f"features.cache_dir={cache}",
            "features.resize=64",
            "features.input_size=64",
            "features.embed_dim=16",
            "scoring.map_sigma=1.0",
            "device=cpu",
            *extra,
        ],
        base=load_profile("cpu"),
    )


def synth(root, categories: list[str], train: int, test_good: int, per_defect: int):
    """Generated categories at 64 px under ``root`` (seed 0): the tests' datasets."""
    from moleflow.data.synth import SynthCounts, generate

    counts = SynthCounts(train=train, test_good=test_good, test_per_defect=per_defect)
    generate(root, seed=0, size=64, categories=categories, counts=counts)
    return root


def tiny(dataset, cache, *extra: str) -> dict:
    """A configuration small enough for the test suite (seconds per run): two coupling blocks, rank 4, two epochs."""
    small = ["model.coupling_blocks=2", "model.lora_rank=4", "model.context_kernel=3", "training.epochs=2"]
    return tiny_config(dataset, cache, *small, "training.batch_size=4", "evaluation.sample_images=1", *extra)


def continual_synth(root):
    """cap, tile and screw generated at 64 px with 8 training images each (the continual tests' dataset)."""
    return synth(root, ["cap", "tile", "screw"], train=8, test_good=3, per_defect=2)


#: A workflow configuration of two runs on two generated categories, seconds each (the workflow tests').
TINY: dict[str, Any] = {
    "results": "results",
    "cache": "results/cache/features",
    "seeds": [0],
    "base": {
        "profile": "cpu",
        "set": {
            "training.epochs": 1,
            "features.resize": 64,
            "features.input_size": 64,
            "features.embed_dim": 16,
            "model.coupling_blocks": 1,
            "model.lora_rank": 2,
            "evaluation.sample_images": 1,
            "device": "cpu",
        },
    },
    "datasets": {
        "tiny": {
            "kind": "mvtec",
            "root": "data/tiny",
            "categories": ["cap", "tile"],
            "generate": {"seed": 0, "size": 64, "train": 6, "test_good": 2, "test_defect": 2},
        }
    },
    # ablation first: main's run is ablation's MoLE-Flow run, so both runs are one training job (runs_per_job 2)
    "runs_per_job": 2,
    "studies": {
        "ablation": {
            "tables": ["T7"],
            "variants": [{"name": "MoLE-Flow"}, {"name": "w/o TAL", "set": {"training.tail_weight": 0.0}}],
        },
        "main": {"tables": ["T2", "T3", "T4", "T15", "T16"], "variants": [{"name": "MoLE-Flow"}]},
    },
}


def validated(workflow: dict) -> dict:
    """``workflow`` validated (and completed with defaults) by the workflow's schema, as the Snakefile does."""
    import copy

    from snakemake.utils import validate

    cfg = copy.deepcopy(workflow)
    validate(cfg, str(Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"))
    return cfg


#: The run settings of the command-line tests: one coupling block, one epoch, 64 px, on the CPU (seconds per run).
RUN_SETS = [
    "features.resize=64",
    "features.input_size=64",
    "features.embed_dim=16",
    "model.coupling_blocks=1",
    "model.lora_rank=2",
    "training.epochs=1",
    "evaluation.sample_images=0",
    "device=cpu",
]


def run_args(out, root, cache, *extra: str) -> list[str]:
    """``moleflow run`` arguments for :data:`RUN_SETS` on dataset ``root`` into ``out``, and ``extra`` overrides."""
    sets = [f"dataset.root={root}", f"features.cache_dir={cache}", *RUN_SETS, *extra]
    return ["run", "--profile", "cpu", "--out", str(out), "--quiet", *[a for s in sets for a in ("--set", s)]]


def one_line(capsys, code: int, prefix: str = "moleflow: error: ") -> str:
    """The one line a refused command printed on stderr (exit status 2)."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(prefix) and err.count("\n") == 1, err
    return err


def two_task_synth(root):
    """cap and tile generated at 64 px, 4 training images each: the command-line tests' dataset."""
    return synth(root, ["cap", "tile"], train=4, test_good=2, per_defect=1)


def finished_run(root):
    """``(run folder, dataset)``: one finished two-task run under ``root`` (read only: tests copy it to change it)."""
    from moleflow.cli import main

    data = two_task_synth(root / "data")
    assert main(run_args(root / "run", data, root / "cache")) == 0
    return root / "run", data


def csv_rows(path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts."""
    import csv

    with path.open() as handle:
        return list(csv.DictReader(handle))


def category_test_folders(data, category: str) -> list[str]:
    return [str(p) for p in sorted((data / category / "test").iterdir()) if p.is_dir()]


def predict_args(run, data, category: str, out, *extra: str) -> list[str]:
    """``moleflow predict`` arguments: ``run`` on ``category``'s test folders into ``out``, and ``extra``."""
    return ["predict", "--run", str(run), *category_test_folders(data, category), "--out", str(out), *extra]


ALPHA = 0.05  # the audit's registry alpha


def verdict_of(*parts) -> str:
    """The verdict of one claim made of ``parts``, as an audit of that claim alone would decide it (its parts are
    the audit's only tested parts: Benjamini-Hochberg over them sets the level of their intervals)."""
    from analysis.audit.verdicts import Outcome, audit_level, decide

    outcome = Outcome("C0", "family", "d", parts=list(parts))
    decide(outcome, audit_level([outcome], ALPHA))
    return outcome.verdict


from moleflow.config import BEFORE_KEY_EXISTED  # noqa: E402  (the fidelity keys)

#: The keys where the paper's text, the authors' code and this package's earlier behaviour part.
FIDELITY_KEYS = sorted({*BEFORE_KEY_EXISTED, "router.covariance", "training.weight_decay", "model.gamma_init_first"})


def authors(dataset, cache, *extra: str) -> dict:
    """A tiny run configuration with the authors' value of every fidelity key (the schema defaults)."""
    from moleflow.config import apply_overrides, defaults, flat, load_config

    schema = flat(defaults())
    small = tiny(dataset, cache, "training.epochs=3", "evaluation.sample_images=0")
    return load_config(overrides=list(extra), base=apply_overrides(small, {k: schema[k] for k in FIDELITY_KEYS}))


def fidelity_synth(root):
    """cap and tile generated at 64 px, 9 training images each (the fidelity tests' dataset)."""
    return synth(root, ["cap", "tile"], train=9, test_good=3, per_defect=2)


def snakemake_cmd(target: str, *args: str, cores: int = 1) -> list[str]:
    """``python -m snakemake TARGET`` on the repository's Snakefile with ``config.yaml`` of the working folder."""
    import sys

    snakefile = Path(__file__).resolve().parents[1] / "Snakefile"
    return [sys.executable, "-m", "snakemake", target, "-s", str(snakefile), "--configfile", "config.yaml",
            "--cores", str(cores), "--resources", "gpu=1", *args]  # fmt: skip


def audit_context(statuses: list[str], summaries: dict[str, Any] | None = None, **columns: list[Any]) -> Any:
    """A claims-audit :class:`~analysis.audit.context.Context` of one variant's runs (dataset ``d``, study
    ``main``, variant ``MoLE-Flow``, strategy ``frozen_base``): run ``r<k>`` has seed ``k``, status ``statuses[k]``
    and ``columns[name][k]``; ``summaries`` by run id."""
    import pandas as pd

    from analysis.audit.context import Context

    names = ["dataset", "study", "variant", "strategy", "run_id", "seed", "order", "status", *columns]
    rows = [
        ["d", "main", "MoLE-Flow", "frozen_base", f"r{k}", k, "a", status, *(v[k] for v in columns.values())]
        for k, status in enumerate(statuses)
    ]
    return Context(pd.DataFrame(rows, columns=names), dict(summaries or {}), "d")


def assert_t_part(part: Any, values: Any, region: tuple[float, float]) -> None:
    """``part`` (a claims-audit part) is the one-sample t of the finite ``values`` in ``region``, recomputed here:
    its n, mean, standard error ``sd / sqrt(n)``, degrees of freedom ``n - 1`` and region."""
    import numpy as np
    import pytest

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    assert part.n == len(x)
    assert part.estimate == pytest.approx(x.mean(), abs=1e-12)
    assert part.se == pytest.approx(x.std(ddof=1) / np.sqrt(len(x)), rel=1e-9)
    assert part.df == len(x) - 1
    assert part.region == pytest.approx(region)
