"""Mirror run directories into MLflow for browsing.

* :func:`default_tracking_uri`: ``MLFLOW_TRACKING_URI`` if set, else the configured URI,
  else ``sqlite:///<absolute results dir>/mlflow.db`` (four slashes: an absolute path).
* :func:`init_store`: create the store and every experiment (one per study and
  dataset) in one process, before any run logs: a brand-new sqlite store
  initialised by several processes at once can break for good. Each experiment is
  tagged ``mlflow.experimentKind = custom_model_development``, so MLflow 3's UI opens
  it on its training runs rather than on the GenAI overview, and carries a shared view
  (:func:`experiment_url`) whose runs table shows the headline metrics.
* :func:`log_run`: one MLflow run per (experiment, run directory) with every config
  key as a param, tags, per-task metrics as steps (each stamped with the wall-clock
  time its task finished), final metrics, the dataset as an MLflow dataset input
  (name, content digest, categories, layout) and the run's files as artifacts; the
  MLflow run starts and ends when the training run did. Idempotent: a run already
  logged (same experiment, same config hash) is replaced, so a retried job does not
  duplicate it.

Nothing reads back from MLflow; a failed write leaves the run's files untouched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from moleflow.config import flat_strings
from moleflow.errors import MoleflowError
from moleflow.metrics.continual import METRICS as METRIC_KEYS


def default_tracking_uri(results_dir: str | Path, configured: str | None = None) -> str:
    """The tracking URI: environment, then configuration, then a sqlite file under ``results_dir``."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if configured:
        return configured
    return f"sqlite:///{Path(results_dir).resolve() / 'mlflow.db'}"


def experiment_name(study: str, dataset: str) -> str:
    """One experiment per study and dataset: ``"main (synth)"``.

    No slash: MLflow's breadcrumb reads a name as a path and shows only what follows the last ``/``."""
    return f"{study} ({dataset})"


def study_and_dataset(name: str) -> tuple[str, str]:
    """The study and dataset an experiment name stands for (:func:`experiment_name`'s inverse; a name of another
    form, e.g. ``main/synth`` from a store written before, is split at its first slash)."""
    found = re.fullmatch(r"(.+) \(([^()]+)\)", name)
    if found:
        return found.group(1), found.group(2)
    study, _, dataset = name.partition("/")
    return study, dataset


#: The runs-table columns the experiment's shared view shows (MLflow 3's ``mlflow.sharedViewState.<key>`` tag,
#: opened with ``?viewStateShareKey=<key>``): the dataset, the duration and the headline metrics.
HEADLINE_VIEW = "headline"
HEADLINE_COLUMNS = (
    "final.routed.image_auroc",
    "final.routed.pixel_ap",
    "forgetting.fm.image_auroc",
    "routing_accuracy",
)


def headline_view(now_ms: int | None = None) -> str:
    """The shared view as MLflow 3.17 stores a saved view: an envelope (name, times) around the view's state,
    whose ``selectedColumns`` are MLflow's column keys (``<type>.`<name>```). It is listed under the runs
    table's "Views" and opened by :func:`experiment_url`."""
    import time

    columns = ["attributes.`Dataset`", "attributes.`Duration`", *(f"metrics.`{m}`" for m in HEADLINE_COLUMNS)]
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    state = json.dumps({"selectedColumns": columns})
    return json.dumps({"name": "Headline metrics", "createdAt": stamp, "updatedAt": stamp, "state": state})


def experiment_url(server: str, experiment_id: str) -> str:
    """The experiment's runs table with the headline columns, on a server at ``server`` (``http://host:port``)."""
    return (
        f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs"  # the runs tab itself: a redirect drops the key
        f"?workflowType=machine_learning&viewStateShareKey={HEADLINE_VIEW}"
    )


def artifact_folder(name: str) -> str:
    """A folder name for an experiment's artifacts: ``main (synth)`` -> ``main_synth``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "experiment"


def _client(uri: str):
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # MLflow 3's UI: the model-training view


def init_store(
    uri: str, experiments: list[str], artifact_root: str | Path, descriptions: dict[str, str] | None = None
) -> dict[str, str]:
    """Create the store and the experiments, each with its description (what the UI's experiment list shows);
    return ``{name: experiment_id}``."""
    client = _client(uri)
    ids = {}
    for name in experiments:
        tags = {**EXPERIMENT_KIND, f"mlflow.sharedViewState.{HEADLINE_VIEW}": headline_view()}
        if descriptions and descriptions.get(name):
            tags["mlflow.note.content"] = descriptions[name]  # MLflow's experiment description
        found = client.get_experiment_by_name(name)
        if found is None:
            location = (Path(artifact_root).resolve() / artifact_folder(name)).as_uri()
            ids[name] = client.create_experiment(name, artifact_location=location, tags=tags)
        else:
            ids[name] = found.experiment_id
            for key, value in tags.items():
                client.set_experiment_tag(found.experiment_id, key, value)
    _retire_default(client, ids)
    return ids


def _retire_default(client: Any, ids: dict[str, str]) -> None:
    """Delete MLflow's own empty ``Default`` experiment (every new store makes one) so that the experiment list
    shows the studies only; one that holds runs, or is one of ``ids``, is kept."""
    default = client.get_experiment_by_name("Default")
    if default is None or default.lifecycle_stage != "active" or default.experiment_id in ids.values():
        return
    if not client.search_runs([default.experiment_id], max_results=1):
        client.delete_experiment(default.experiment_id)


def git_commit(path: str | Path = ".") -> str:
    """The checkout's commit, or ``unknown``."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _milliseconds(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(1000 * seconds))


def task_times(summary: dict[str, Any]) -> tuple[int, list[int], int]:
    """``(start, [end of each finished task], end)`` of the training run in epoch milliseconds;
    ``(0, [], 0)`` for a summary written before runs recorded wall-clock times."""
    timings = summary.get("timings", {})
    end = _milliseconds(timings.get("finished_at"))
    start = _milliseconds(timings.get("started_at"))
    tasks = [_milliseconds(t) for t in timings.get("task_finished_at", [])]
    if end is None or start is None:
        return 0, [], 0
    return start, [t for t in tasks if t is not None], end


def dataset_input(summary: dict[str, Any]):
    """The run's dataset as an MLflow ``DatasetInput`` (None for a summary without a dataset record)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    ds = summary.get("dataset")
    if not ds:
        return None
    dataset = Dataset(
        name=f"{ds['kind']}:{Path(ds['root']).name}",
        digest=ds["digest"],
        source_type="local",
        source=json.dumps({"uri": Path(ds["root"]).resolve().as_uri()}),
        schema=json.dumps({"layout": ds["kind"], "categories": ds["categories"]}),
        profile=json.dumps({"categories": len(ds["categories"]), "fingerprints": ds["fingerprints"]}),
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "train+test")])


def _metrics(summary: dict[str, Any]) -> list[tuple[str, float, int]]:
    """``(key, value, step)``: per-task rows as steps, final means and forgetting at the last step."""
    out: list[tuple[str, float, int]] = []
    done = summary["tasks_completed"]
    for metric in METRIC_KEYS:
        for mode, key in (("routed", "accuracy_matrix"), ("oracle", "accuracy_matrix_oracle")):
            matrix = summary[key][metric]
            for j in range(done):
                row = [v for v in matrix[j][: j + 1] if v is not None]
                if row:
                    out.append((f"{mode}.seen_mean.{metric}", float(sum(row) / len(row)), j))
        for mode in ("routed", "oracle"):
            value = summary["mean"][mode][metric]
            if value is not None:
                out.append((f"final.{mode}.{metric}", float(value), max(done - 1, 0)))
        for kind in ("fm", "paper", "bwt"):
            value = summary["forgetting"][metric][kind]
            if value is not None:
                out.append((f"forgetting.{kind}.{metric}", float(value), max(done - 1, 0)))
    if summary.get("routing_accuracy") is not None:
        out.append(("routing_accuracy", float(summary["routing_accuracy"]), max(done - 1, 0)))
    for j, acc in enumerate(summary.get("routing_accuracy_after_task", [])):
        out.append(("routing_accuracy_after_task", float(acc), j))
    for task, seconds in enumerate(summary.get("timings", {}).get("training_per_task", [])):
        out.append(("train_seconds", float(seconds), task))
    for task in summary["per_task"]:
        if task["epoch_losses"]:
            out.append(("final_train_loss", float(task["epoch_losses"][-1]), task["task"]))
        if "skipped_batches" in task:  # batches skipped for a non-finite or too large loss (training.nonfinite: skip)
            out.append(("skipped_batches", float(task["skipped_batches"]), task["task"]))
        for key, value in (task.get("input_collapse") or {}).items():  # the flow's input-collapse diagnostic
            if key in COLLAPSE_METRICS and value is not None:
                out.append((f"input_collapse.{key}", float(value), task["task"]))
    return out


#: The input-collapse diagnostic's figures logged per task (``input_collapse.<key>``).
COLLAPSE_METRICS = ("input_logdet", "logvolume_per_channel", "mixer_self_coefficient", "eig_median_ratio", "separation")


def run_summary(run_dir: str | Path) -> dict[str, Any]:
    """The summary of a finished run folder; one line naming the folder or file when there is none to log."""
    from moleflow.continual.summary_file import read_summary

    folder = Path(run_dir)
    if not folder.is_dir():
        raise MoleflowError(f"--run-dir: no such run folder: {folder}")
    if not (folder / "summary.json").is_file():
        raise MoleflowError(
            f"--run-dir: {folder} holds no summary.json: the run has not finished (see its status.json)"
        )
    return read_summary(folder / "summary.json")


def log_run(uri: str, run_dir: str | Path, experiment: str, tags: dict[str, str]) -> str:
    """Log one run directory into ``experiment``; return the MLflow run id."""
    from mlflow.entities import Metric, Param

    run_dir = Path(run_dir)
    summary = run_summary(run_dir)
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise MoleflowError(
            f"MLflow experiment {experiment!r} does not exist in {uri}; create it first "
            f"(moleflow track init --experiments {experiment}, the workflow's mlflow_init)"
        )
    old = client.search_runs([found.experiment_id], filter_string=f"tags.config_hash = '{summary['config_hash']}'")
    for run in old:
        client.delete_run(run.info.run_id)
    collapse = summary.get("input_collapse")
    all_tags = {
        **({"input_collapse": "collapsed" if collapse["collapsed"] else "ok"} if collapse else {}),
        "status": summary["status"],
        "strategy": summary["strategy"],
        "seed": str(summary["seed"]),
        "task_order": ",".join(summary["tasks"]),
        "config_hash": summary["config_hash"],
        "mlflow.runName": f"{tags.get('variant', summary['strategy'])}-seed{summary['seed']}",
        **tags,
    }
    start, finished, end = task_times(summary)
    if not end:  # an older summary: its file's time
        start = end = int((run_dir / "summary.json").stat().st_mtime * 1000)
    run = client.create_run(found.experiment_id, start_time=start, tags=all_tags)
    run_id = run.info.run_id
    params = [Param(k, v[:6000]) for k, v in flat_strings(summary["config"]).items()]
    stamp = lambda step: finished[step] if step < len(finished) else end  # noqa: E731
    metrics = [Metric(k, v, stamp(step), step) for k, v, step in _metrics(summary)]
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    for start in range(0, len(metrics), 500):
        client.log_batch(run_id, metrics=metrics[start : start + 500])
    for name in ("summary.json", "tasks.csv", "config.yaml", "accuracy_matrix.png"):
        if (run_dir / name).is_file():
            client.log_artifact(run_id, str(run_dir / name))
    if (run_dir / "samples").is_dir():
        client.log_artifacts(run_id, str(run_dir / "samples"), artifact_path="samples")
    inputs = dataset_input(summary)
    if inputs is not None:
        client.log_inputs(run_id, datasets=[inputs])
    client.set_terminated(run_id, status="FINISHED" if summary["status"] == "ok" else "FAILED", end_time=end)
    return run_id


def log_memberships(
    uri: str, run_dir: str | Path, memberships: list[tuple[str, str]], record: str | Path | None = None
) -> dict[str, str]:
    """Log one run directory once per ``(experiment, variant)`` it belongs to; optionally record the run ids.

    The workflow's ``track`` job calls this (in the Snakemake process, so MLflow's
    import is paid once); ``moleflow track log`` calls it from the command line.
    """
    from moleflow.io import write_json_atomic

    logged = {}
    for experiment, variant in memberships:
        study, dataset = study_and_dataset(experiment)
        tags = {"study": study, "dataset": dataset, "variant": variant or study, "git_commit": git_commit()}
        logged[experiment] = log_run(uri, run_dir, experiment, tags)
    if record:
        write_json_atomic(record, {"tracking_uri": uri, "runs": logged})
    return logged
