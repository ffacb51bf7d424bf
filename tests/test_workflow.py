"""The Snakemake workflow: planning, an end-to-end run with MLflow, no-op reruns, targeted reruns."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tests_helpers import TINY, snakemake_cmd
from tests_helpers import validated as _validated

from moleflow.errors import ConfigError
from moleflow.planning import plan_runs

ROOT = Path(__file__).resolve().parents[1]


def test_plan_shares_runs_between_studies_and_keys_them_by_config() -> None:
    runs = plan_runs(_validated(TINY))
    assert len(runs) == 2  # main's run is ablation's MoLE-Flow run
    shared = next(r for r in runs.values() if len(r.studies) == 2)
    assert shared.studies == ["ablation", "main"] and shared.config["seed"] == 0
    changed = copy.deepcopy(TINY)
    changed["studies"]["ablation"]["variants"][1]["set"]["training.tail_weight"] = 0.1
    again = plan_runs(_validated(changed))
    assert shared.run_id in again and len(set(again) - set(runs)) == 1


def test_workflow_plan_gives_every_list_the_rules_use(tmp_path: Path) -> None:
    from moleflow.data.synth import DEFAULT_CATEGORIES
    from moleflow.data.synth.standin import make_mvtec
    from moleflow.planning import WorkflowPlan

    plan = WorkflowPlan.from_config(_validated(TINY))
    shared = next(r.run_id for r in plan.runs.values() if len(r.studies) == 2)
    other = next(r.run_id for r in plan.runs.values() if r.run_id != shared)
    assert plan.studies == {"main": [shared], "ablation": sorted([shared, other])}
    assert plan.study_runs == {
        "main/tiny": [(shared, "MoLE-Flow")],
        "ablation/tiny": sorted([(shared, "MoLE-Flow"), (other, "w/o TAL")], key=lambda p: p[1]),
    }
    assert plan.experiments == ["ablation/tiny", "main/tiny"]
    assert plan.categories("tiny") == ["cap", "tile"]
    assert plan.feature_records("results", "tiny") == [
        "results/features/tiny/cap.json",
        "results/features/tiny/tile.json",
    ]
    assert plan.dataset_marker("tiny") == ["data/tiny/synth.json"]
    assert plan.generated == {
        "data/tiny": {"generate": TINY["datasets"]["tiny"]["generate"], "categories": ["cap", "tile"]}
    }
    wf = copy.deepcopy(TINY)
    wf["datasets"]["tiny"].pop("categories")  # generated, all of them: known before they exist
    wf["datasets"]["disk"] = {
        "kind": "mvtec",
        "root": str(make_mvtec(tmp_path / "disk", {"bottle": False, "screw": True})),
    }
    plan = WorkflowPlan.from_config(_validated(wf))
    assert plan.categories("tiny") == list(DEFAULT_CATEGORIES) and plan.categories("disk") == ["bottle", "screw"]
    assert plan.dataset_marker("disk") == [] and list(plan.generated) == ["data/tiny"]


def test_plan_cuts_each_studys_runs_into_training_jobs() -> None:
    """A run belongs to the first study that needs it; each study's runs are cut into jobs of its runs_per_job."""
    from moleflow.planning import WorkflowPlan

    plan = WorkflowPlan.from_config(_validated(TINY))
    assert list(plan.jobs) == ["ablation_tiny_00"] and sorted(plan.jobs["ablation_tiny_00"]) == plan.studies["ablation"]
    wf = copy.deepcopy(TINY)
    wf["seeds"] = [0, 1, 2]
    wf["studies"]["ablation"]["runs_per_job"] = 4
    wf["studies"]["main"]["variants"].append({"name": "lr", "set": {"training.lr": 0.01}})
    plan = WorkflowPlan.from_config(_validated(wf))
    sizes = {job: len(ids) for job, ids in plan.jobs.items()}
    assert sizes == {"ablation_tiny_00": 4, "ablation_tiny_01": 2, "main_tiny_00": 2, "main_tiny_01": 1}, sizes
    assert sorted(r for ids in plan.jobs.values() for r in ids) == sorted(plan.runs)  # every run exactly once
    assert plan.record()["jobs"] == plan.jobs
    priorities = {job: plan.job_priority(job) for job in plan.jobs}
    assert priorities["ablation_tiny_00"] > priorities["main_tiny_01"]  # four runs' work before one run's


def test_a_variants_runs_per_job_packs_its_runs_with_the_studys_runs_of_the_same_size() -> None:
    """A variant's own runs_per_job: its runs share jobs with the study's other runs of that size, whatever their
    variant; the job numbers go on across sizes; a run that an earlier study owns stays in that study's jobs; and
    the key does not enter a run's configuration (the run ids are the same without it)."""
    from moleflow.planning import WorkflowPlan

    wf = copy.deepcopy(TINY)
    wf["seeds"] = [0, 1, 2]
    wf["studies"]["main"]["variants"] += [
        {"name": "lr", "set": {"training.lr": 0.01}},
        {"name": "kNN", "set": {"strategy.name": "knn"}, "seeds": [0], "runs_per_job": 4},
        {"name": "DNE", "set": {"strategy.name": "dne"}, "runs_per_job": 4},
    ]
    wf["studies"]["main"]["variants"][0]["runs_per_job"] = 4  # MoLE-Flow: ablation's runs (the first study)
    plan = WorkflowPlan.from_config(_validated(wf))
    jobs = {job: sorted(ids) for job, ids in plan.jobs.items()}
    variant = {r.run_id: dict(r.memberships)["main"] for r in plan.runs.values() if "main" in r.studies}
    assert {job: len(ids) for job, ids in jobs.items()} == {
        "ablation_tiny_00": 2,
        "ablation_tiny_01": 2,
        "ablation_tiny_02": 2,
        "main_tiny_00": 2,
        "main_tiny_01": 1,
        "main_tiny_02": 4,
    }, jobs
    assert sorted(variant[r] for r in jobs["main_tiny_02"]) == ["DNE", "DNE", "DNE", "kNN"]
    assert {variant[r] for r in jobs["main_tiny_00"] + jobs["main_tiny_01"]} == {"lr"}
    for v in wf["studies"]["main"]["variants"]:
        v.pop("runs_per_job", None)
    assert sorted(plan_runs(_validated(wf))) == sorted(plan.runs)
    assert len(WorkflowPlan.from_config(_validated(wf)).jobs) == 7  # without it: kNN and DNE in jobs of two


def test_feature_jobs_cover_every_resolution_the_runs_read() -> None:
    from moleflow.planning import WorkflowPlan

    wf = copy.deepcopy(TINY)
    wf["studies"]["small"] = {
        "set": {"features.resize": 48, "features.input_size": 48, "dataset.categories": ["cap"]},
        "variants": [{"name": "MoLE-Flow"}],
    }
    plan = WorkflowPlan.from_config(_validated(wf))
    cap, tile = plan.feature_settings("tiny", "cap"), plan.feature_settings("tiny", "tile")
    assert [(f["resize"], f["input_size"]) for f in cap] == [(48, 48)] and tile == []  # the small study reads cap only
    assert plan.feature_settings("tiny", "cap")[0]["cache_dir"] == TINY["cache"]


def test_plan_crosses_seeds_and_orders() -> None:
    wf = copy.deepcopy(TINY)
    wf["seeds"] = [0, 1, 2]
    wf["studies"]["order"] = {"orders": ["alphabetical", "random-1"], "variants": [{"name": "MoLE-Flow"}]}
    runs = plan_runs(_validated(wf))
    order_runs = [r for r in runs.values() if "order" in r.studies]
    assert len(order_runs) == 6 and {r.order for r in order_runs} == {"alphabetical", "random-1"}
    assert {r.config["order_seed"] for r in order_runs if r.order == "random-1"} == {1}


def test_unknown_run_key_names_the_study() -> None:
    wf = copy.deepcopy(TINY)
    wf["studies"]["ablation"]["variants"][1]["set"] = {"training.tail_wieght": 0.0}
    with pytest.raises(
        ConfigError, match=r"studies.ablation.variants.w/o TAL: unknown config key 'training.tail_wieght'"
    ):
        plan_runs(_validated(wf))


def test_workflow_schema_rejects_unknown_keys(tmp_path: Path) -> None:
    wf = copy.deepcopy(TINY)
    wf["studies"]["main"]["variantz"] = []
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(wf))
    result = _snakemake(tmp_path, "-n")
    assert result.returncode != 0 and "variantz" in result.stdout + result.stderr


def test_default_and_paper_configs_plan() -> None:
    counts = {}
    for name in ("config.yaml", "paper.yaml"):
        runs = plan_runs(_validated(yaml.safe_load((ROOT / "config" / name).read_text())))
        assert all(len(r.run_id) == 12 for r in runs.values())
        counts[name] = len(runs)
    assert counts == {"config.yaml": 133, "paper.yaml": 515}


def _rule_counts(text: str) -> dict[str, int]:
    from benchmarks.workflow import rule_counts

    return rule_counts(text)


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_cmd("all_tables", *args, cores=2), cwd=workdir, capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_end_to_end_workflow_with_mlflow(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    first = _snakemake(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = sorted((tmp_path / "results" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "ok" and summary["tasks"] == ["cap", "tile"]
        assert summary["timings"]["feature_cache"]["misses"] == 0  # the feature jobs extracted; runs only read
    logged = {
        p.parent.name: json.loads(p.read_text())["runs"]
        for p in (tmp_path / "results" / "mlflow" / "logged").glob("*/tiny.json")
    }
    assert sorted(logged) == ["ablation", "main"] and len(logged["ablation"]) == 2 and len(logged["main"]) == 1
    assert (tmp_path / "data" / "tiny" / "synth.json").is_file()
    index = (tmp_path / "results" / "tables" / "index.csv").read_text()
    assert "T7_ablation_tiny" in index and (tmp_path / "results" / "runs.csv").is_file()
    figures = (tmp_path / "results" / "figures" / "index.csv").read_text()
    assert "qualitative_tiny" in figures and "accuracy_matrix_tiny" in figures
    assert (
        "(reported)" not in (tmp_path / "results" / "tables" / "T3_image_auroc_tiny.md").read_text()
    )  # generated data
    assert len(list((tmp_path / "results" / "features" / "tiny").glob("*.json"))) == 2
    # the claims audit: one row per claim, each with a verdict; its pages and the figures go into the Snakemake report
    assert "claims" in index and "paper_self_check" in index
    claims = pd.read_csv(tmp_path / "results" / "tables" / "claims.csv")
    assert list(claims["row"]) == [
        *(f"C{i}" for i in range(1, 19)),
        "C18g",
        "C18d",
        "O1",
        "O2",
        *(f"C{i}" for i in range(19, 46)),
    ]
    assert set(claims["Verdict"]) <= {"supported", "contradicted", "inconclusive", "not tested here"}
    assert claims.set_index("row").loc["C1", "Verdict"] == "supported"  # zero forgetting, checked bit for bit
    assert claims.set_index("row").loc["C5", "Verdict"] == "not tested here"  # generated data
    assert (tmp_path / "results" / "report" / "audit" / "claims.html").is_file()
    # the effects figure is drawn exactly when some tested part has an interval (one seed here gives none)
    from analysis.audit import audit
    from analysis.collect import collect, load_summaries

    plan = json.loads((tmp_path / "results" / "plan.json").read_text())
    summaries = load_summaries(plan, tmp_path / "results")
    _, outcomes, _ = audit(collect(plan, tmp_path / "results", summaries), plan, summaries)
    estimated = [p for o in outcomes for p in o.parts if np.isfinite(p.estimate) and np.isfinite(p.low)]
    assert ("claims_effects" in figures) == bool(estimated)
    assert (tmp_path / "results" / "figures" / "claims_effects.png").is_file() == bool(estimated)
    # Snakemake's per-job timings feed the breakdown of benchmarks/RESULTS.md
    from benchmarks.breakdown import job_walls, run_split, table

    walls = job_walls(tmp_path / "results")
    assert sorted(set(walls["kind"])) == ["all_tables", "features", "mlflow_init", "run", "synth", "track"]
    assert len(walls[walls["kind"] == "run"]) == 1 and (walls["seconds"] > 0).all()  # both runs in one job
    breakdown = table(tmp_path / "results", elapsed=float(walls["seconds"].sum()), cores=1)
    assert "| run jobs | 1 |" in breakdown and "- of which training" in breakdown
    split = run_split(tmp_path / "results", walls[walls["kind"] == "run"])
    assert split["training"] > 0 and split["process start-up and outputs"] > 0
    report = _snakemake(tmp_path, "--report", "report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    page = (tmp_path / "report.html").read_text(errors="replace")
    assert "Claims audit" in page and "claims.html" in page and "accuracy_matrix_tiny.png" in page

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    names = sorted(e.name for e in client.search_experiments() if e.name != "Default")
    assert names == ["ablation (tiny)", "main (tiny)"]  # no slash: MLflow's breadcrumb would show only "tiny"
    ablation = client.get_experiment_by_name("ablation (tiny)")
    assert ablation is not None
    ablation_runs = client.search_runs([ablation.experiment_id])
    assert sorted(r.data.tags["variant"] for r in ablation_runs) == ["MoLE-Flow", "w/o TAL"]
    one = ablation_runs[0]
    assert one.data.params["training.epochs"] == "1" and "final.routed.image_auroc" in one.data.metrics
    assert {a.path for a in client.list_artifacts(one.info.run_id)} >= {
        "summary.json",
        "tasks.csv",
        "samples",
        "accuracy_matrix.png",
        "config.yaml",
    }
    # what the UI shows: the model-training view, the training run's own times, the dataset, per-task histories
    assert ablation.tags["mlflow.experimentKind"] == "custom_model_development"
    summary = json.loads((tmp_path / "results" / "runs" / one.data.tags["config_hash"] / "summary.json").read_text())
    timings = summary["timings"]
    assert one.info.start_time == round(1000 * timings["started_at"]) and one.info.end_time == round(
        1000 * timings["finished_at"]
    )
    assert one.info.end_time - one.info.start_time >= 1000 * timings["training"] * 0.9  # it spans the training
    assert one.inputs is not None
    (dataset,) = one.inputs.dataset_inputs
    assert dataset.dataset.digest == summary["dataset"]["digest"] and json.loads(str(dataset.dataset.schema))[
        "categories"
    ] == ["cap", "tile"]
    history = client.get_metric_history(one.info.run_id, "oracle.seen_mean.image_auroc")
    assert [m.step for m in history] == [0, 1]
    assert [m.timestamp for m in history] == [round(1000 * t) for t in timings["task_finished_at"]]

    again = _snakemake(tmp_path, "-n")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr

    changed = copy.deepcopy(TINY)
    changed["studies"]["ablation"]["variants"][1]["set"]["training.tail_weight"] = 0.2
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(changed))
    planned = _snakemake(tmp_path, "-n", "--quiet", "rules")
    text = planned.stdout + planned.stderr
    assert planned.returncode == 0
    counts = _rule_counts(text)
    assert counts.get("train") == 1 and "synth" not in counts and "features" not in counts, text


@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_profiles_parse_and_plan(tmp_path: Path, profile: str) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    result = _snakemake(
        tmp_path, "-n", "--quiet", "rules", "--workflow-profile", str(ROOT / "workflow" / "profiles" / profile)
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-2000:]
    counts = _rule_counts(text)
    # two runs (main's MoLE-Flow is ablation's) in one training job, two categories, one MLflow job per study and dataset
    assert counts == {
        "all_tables": 1,
        "dataset_config": 1,
        "features": 2,
        "mlflow_init": 1,
        "train": 1,
        "synth": 1,
        "track": 2,
        "workflow_config": 1,
        "total": 10,
    }, counts


def test_paper_grid_plans_on_stand_in_trees(tmp_path: Path) -> None:
    from conftest import make_mvtec, make_visa

    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    from moleflow.data.synth.standin import MVTEC_CATEGORIES, VISA_CATEGORIES

    # every category the paper's studies name must exist: a category missing on a root is refused at planning
    tiny = {"train": 2, "test_good": 1, "per_defect": 1, "size": 16}
    paper["datasets"]["mvtec"]["root"] = str(
        make_mvtec(tmp_path / "mvtec", {c: c == "screw" for c in MVTEC_CATEGORIES}, **tiny)
    )
    paper["datasets"]["visa"]["root"] = str(
        make_visa(tmp_path / "visa", list(VISA_CATEGORIES), size=16, train=2, test_normal=1, anomalous=1)
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(paper))
    result = _snakemake(tmp_path, "-n", "--quiet", "rules", "--scheduler", "greedy")
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-2000:]
    counts = _rule_counts(text)
    features = len(MVTEC_CATEGORIES) + len(VISA_CATEGORIES)  # one feature job per category
    assert counts["train"] == 515 and counts["features"] == features and counts["track"] == 13, counts


@pytest.mark.parametrize("target", ["all_runs", "study_main", "study_ablation"])
def test_documented_targets_plan(tmp_path: Path, target: str) -> None:
    """Every target the README names resolves to jobs that some rule writes (a dry run)."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    cmd = [
        *snakemake_cmd(target),
        "-n",
        "--quiet",
        "rules",
    ]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-2000:]
    counts = _rule_counts(text)
    assert counts["train"] == 1, counts  # both runs are one training job (runs_per_job 2)
    # what tells the targets apart: the studies whose runs are logged to MLflow, and no tables
    logged = {"all_runs": 2, "study_main": 1, "study_ablation": 1}[target]
    assert counts["track"] == logged and "all_tables" not in counts, counts
    if target != "all_runs":
        study = target.removeprefix("study_")
        other = {"main": "ablation", "ablation": "main"}[study]
        dry = subprocess.run(cmd[:-3] + ["-n"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert f"mlflow/logged/{study}/tiny.json" in dry.stdout and f"mlflow/logged/{other}/tiny.json" not in dry.stdout
