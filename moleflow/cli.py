"""The ``moleflow`` command line.

Subcommands::

    moleflow synth OUT [--seed S] [--size PX] [--categories ...]
    moleflow data check --dataset {mvtec,visa,folder} --root DIR [--categories ...] [--json]
    moleflow data baseline --dataset {mvtec,visa,folder} --root DIR [--categories ...]
    moleflow features extract [--config FILE] [--set key=value ...] [--dataset K --root DIR] [--categories ...]
    moleflow run [--profile cpu] [--config FILE] [--set key=value ...] --out RUN_DIR
    moleflow run-many --runs-json '{"RUN_DIR": {config}, ...}'
    moleflow predict --run RUN_DIR IMAGE_OR_FOLDER ... --out DIR [--task T] [--threshold X | --normal DIR]
    moleflow config show [--profile cpu] [--config FILE] [--set key=value ...]

A problem with the user's input is printed as one line (``moleflow: error: ...``)
with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from moleflow.errors import MoleflowError


def _cmd_synth(args: argparse.Namespace) -> int:
    from moleflow.data.synth import SynthCounts, generate

    counts = SynthCounts(train=args.train, test_good=args.test_good, test_per_defect=args.test_defect)
    start = time.perf_counter()
    summary = generate(args.out, seed=args.seed, size=args.size, categories=args.categories, counts=counts)
    images = sum(sum(c.values()) for c in summary.values())
    print(f"wrote {images} images in {len(summary)} categories to {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from moleflow.data.check import check_dataset, format_counts

    counts = check_dataset(args.dataset, args.root, args.categories)
    print(json.dumps(counts, indent=2) if args.json else format_counts(counts))
    return 0


def _cmd_data_baseline(args: argparse.Namespace) -> int:
    from moleflow.data.synth.difficulty import pixel_zscore_auroc
    from moleflow.data.layouts import list_categories, no_categories

    categories = args.categories or list_categories(args.dataset, args.root)
    if not categories:
        raise no_categories(args.dataset, args.root)
    values = {c: pixel_zscore_auroc(args.dataset, args.root, c) for c in categories}
    for category, value in values.items():
        print(f"{category}: per-pixel z-score detector image AUROC {value:.3f}")
    print(f"mean: {np.mean(list(values.values())):.3f}")
    return 0


def _resolve(args: argparse.Namespace) -> dict:
    from moleflow.config import load_config

    from moleflow.config import load_profile

    overrides = list(args.set or [])
    if getattr(args, "dataset", None):
        overrides.append(f"dataset.kind={args.dataset}")
    if getattr(args, "root", None):
        overrides.append(f"dataset.root={args.root}")
    base = load_profile(args.profile) if getattr(args, "profile", None) else None
    if getattr(args, "config_json", None):
        from moleflow.config import defaults, merge

        try:
            given = json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise MoleflowError(f"--config-json is not valid JSON ({exc})") from None
        base = merge(base or defaults(), given)
    return load_config(args.config, overrides, base=base)


def _also_features(text: str | None) -> list[dict]:
    """``--also-features``: a JSON list of whole ``features`` blocks to extract as well."""
    if not text:
        return []
    try:
        blocks = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MoleflowError(f"--also-features is not valid JSON ({exc})") from None
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise MoleflowError("--also-features must be a JSON list of features blocks [{...}, ...]")
    return blocks


def _cmd_features_extract(args: argparse.Namespace) -> int:
    from moleflow.config import load_config
    from moleflow.data.layouts import list_categories, no_categories
    from moleflow.features.extract import FeatureStore
    from moleflow.io import ensure_writable_dir

    also = _also_features(args.also_features)
    config = _resolve(args)
    ds = config["dataset"]
    categories = args.categories or ds["categories"] or list_categories(ds["kind"], ds["root"])
    if not categories:
        raise no_categories(ds["kind"], ds["root"])
    ensure_writable_dir(config["features"]["cache_dir"], "features.cache_dir")
    _set_threads(args)
    stores = [FeatureStore(config, progress=not args.quiet)]
    for settings in also:  # the other resolutions the workflow's runs read
        stores.append(FeatureStore(load_config(None, [], base={**config, "features": settings}), progress=not args.quiet))
    records = []
    for store in stores:
        for category in categories:
            for split in args.splits:
                features = store.get(category, split)
                records.append({"category": category, "split": split, "path": str(features.path),
                                "images": int(features.patches.shape[0])})
                n = features.patches.shape[0]
                how = "cache hit" if store.last_hit else "extracted"
                rate = features.meta["images_per_second"]
                print(f"{category}/{split}: {n} images, patches {tuple(features.patches.shape[1:])} {features.patches.dtype}, "
                      f"{how} ({rate:.1f} img/s at extraction) -> {features.path}")
    stats = {key: sum(store.stats[key] for store in stores) for key in stores[0].stats}
    print(f"cache: {stats['hits']} hits, {stats['misses']} misses, "
          f"{stats['images_extracted']} images extracted in {stats['extract_seconds']:.1f} s")
    if args.record:
        from moleflow.io import write_json_atomic

        write_json_atomic(args.record, {"entries": records, "stats": stats})
    return 0


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _set_threads(args: argparse.Namespace) -> None:
    """``--threads N``: torch's intra-op threads (the workflow passes what Snakemake gives the job)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def _cmd_run(args: argparse.Namespace) -> int:
    from moleflow.continual import run

    config = _resolve(args)
    _set_threads(args)
    summary = run(config, args.out, progress=not args.quiet, log=lambda line: print(line, flush=True))
    _print_outcome(summary, args.out)
    return 0


def _print_outcome(summary: dict, out: str | Path, prefix: str = "") -> None:
    mean = summary["mean"]["routed"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    forgetting = ("no forgetting with one task" if len(summary["tasks"]) == 1
                  else f"FM(I-AUROC) {fmt(summary['forgetting']['image_auroc']['fm'])}")
    print(f"{prefix}{summary['status']}: {summary['tasks_completed']}/{len(summary['tasks'])} tasks; mean routed "
          f"I-AUROC {fmt(mean['image_auroc'])} P-AUROC {fmt(mean['pixel_auroc'])} P-AP {fmt(mean['pixel_ap'])} "
          f"AUPRO {fmt(mean['aupro'])}; routing {fmt(summary['routing_accuracy'])}; "
          f"{forgetting} -> {out}/summary.json", flush=True)


def _runs_json(text: str) -> dict[str, dict]:
    """``--runs-json``: ``{"RUN_DIR": {config}, ...}`` (or ``@FILE`` holding it)."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise MoleflowError(f"--runs-json: cannot read {text[1:]} ({exc.strerror})") from None
    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise MoleflowError(f"--runs-json: {', '.join(twice)} given twice in one object (one of them would be "
                                "dropped silently)")
        return dict(pairs)

    try:
        runs = json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise MoleflowError(f"--runs-json is not valid JSON ({exc})") from None
    if not isinstance(runs, dict) or not all(isinstance(c, dict) for c in runs.values()):
        raise MoleflowError('--runs-json must be one JSON object {"RUN_DIR": {config}, ...}')
    same: dict[Path, str] = {}
    for out in runs:
        where = Path(out).expanduser().resolve()
        if where in same:
            raise MoleflowError(f"--runs-json: {same[where]!r} and {out!r} are the same folder ({where})")
        same[where] = out
    return runs


def _cmd_run_many(args: argparse.Namespace) -> int:
    """Several runs one after the other in this process: the start-up (imports) is paid once.

    Every run is checked before any trains; a run whose directory already holds its finished
    summary is skipped; a run that fails is reported and the others still run (exit status 1).
    """
    import traceback

    from moleflow.config import config_hash, defaults, load_config, merge
    from moleflow.continual import run
    from moleflow.continual.checkpoint import check_run_dir

    runs = {out: load_config(None, [], base=merge(defaults(), given)) for out, given in _runs_json(args.runs_json).items()}
    for out, config in runs.items():
        check_run_dir(Path(out), config)
    _set_threads(args)
    failed = []
    for k, (out, config) in enumerate(runs.items(), 1):
        prefix = f"[{k}/{len(runs)} {Path(out).name}] "
        try:
            done = json.loads((Path(out) / "summary.json").read_text())
            if done.get("config_hash") == config_hash(config) and done.get("status") in ("ok", "diverged"):
                print(f"{prefix}already finished ({done['status']}) -> {out}/summary.json", flush=True)
                continue
        except (OSError, ValueError):
            pass
        start = time.perf_counter()
        try:
            summary = run(config, out, progress=not args.quiet, log=lambda line: print(prefix + line, flush=True))
        except MoleflowError as exc:
            print(f"{prefix}failed: {exc}", flush=True)
            failed.append(out)
            continue
        except Exception:  # a bug in one run must not lose the others: report it whole and go on
            print(f"{prefix}failed with a traceback:\n{traceback.format_exc()}", flush=True)
            failed.append(out)
            continue
        _print_outcome(summary, out, prefix)
        print(f"{prefix}{time.perf_counter() - start:.1f} s in this process", flush=True)
    if failed:
        print(f"moleflow: error: {len(failed)} of {len(runs)} runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from moleflow.continual.predict import predict_images

    _set_threads(args)
    done = predict_images(args.run, args.images, args.out, args.task, args.threshold, args.normal, args.quantile,
                          args.allow_training_normal)
    for note in done["notes"]:
        print(note, file=sys.stderr)
    if done["decided"] is None:
        decided = ""
    elif done["decided"] == 0:
        decided = "; no image was routed to a task with a threshold: no decision"
    else:
        decided = f"; {done['anomalous']} of {done['decided']} decided images above their threshold ({done['how']})"
    print(f"scored {done['images']} images ({done['backbone_images']} backbone passes) -> {args.out}/scores.csv, "
          f"{args.out}/maps/, {args.out}/overlays/{decided}")
    return 0


def _cmd_track_init(args: argparse.Namespace) -> int:
    from moleflow.io import write_json_atomic
    from moleflow.tracking import default_tracking_uri, init_store

    uri = default_tracking_uri(args.results, args.uri)
    ids = init_store(uri, args.experiments, Path(args.results) / "mlflow-artifacts")
    if args.record:
        write_json_atomic(args.record, {"tracking_uri": uri, "experiments": ids})
    print(f"MLflow store {uri}: {len(ids)} experiments")
    return 0


def _cmd_track_log(args: argparse.Namespace) -> int:
    from moleflow.tracking import default_tracking_uri, log_memberships

    uri = default_tracking_uri(args.results, args.uri)
    memberships = [(spec.partition("=")[0], spec.partition("=")[2]) for spec in args.experiment]
    logged = log_memberships(uri, args.run_dir, memberships, args.record)
    print(f"logged {args.run_dir} to {len(logged)} MLflow experiment(s) at {uri}")
    return 0


def _cmd_track_study(args: argparse.Namespace) -> int:
    from moleflow.io import write_json_atomic
    from moleflow.tracking import default_tracking_uri, log_memberships
    from moleflow.tracking.mlflow_log import run_summary

    uri = default_tracking_uri(args.results, args.uri)
    for spec in args.run:  # every folder checked before the first is logged: a bad one does not leave half a study
        run_summary(spec.partition("=")[0])
    logged = {}
    for spec in args.run:
        run_dir, _, variant = spec.partition("=")
        logged[Path(run_dir).name] = log_memberships(uri, run_dir, [(args.experiment, variant)])[args.experiment]
    if args.record:
        write_json_atomic(args.record, {"tracking_uri": uri, "experiment": args.experiment, "runs": logged})
    print(f"logged {len(logged)} run(s) to MLflow experiment {args.experiment!r} at {uri}")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from collections import Counter

    from moleflow.config import read_workflow_config
    from moleflow.planning import plan_runs

    from moleflow.errors import ConfigError

    workflow = read_workflow_config(args.configfile)  # its errors name the file already
    try:
        runs = plan_runs(workflow)
    except ConfigError as exc:
        raise ConfigError(f"{args.configfile}: {exc}") from None
    per_study = Counter(study for run in runs.values() for study in run.studies)
    for study, count in per_study.items():
        datasets = sorted({r.dataset for r in runs.values() if study in r.studies})
        print(f"{study}: {count} runs ({', '.join(datasets)})")
    print(f"total: {len(runs)} distinct runs")
    if not args.smoke:
        return 0
    return _smoke(args)


def _hours(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def _smoke(args: argparse.Namespace) -> int:
    from moleflow.config import read_workflow_config
    from moleflow.io import write_json_atomic
    from moleflow.planning import WorkflowPlan
    from moleflow.planning.smoke import smoke

    _set_threads(args)
    report = smoke(WorkflowPlan.from_config(read_workflow_config(args.configfile)), device=args.device,
                   studies=args.studies)
    est, failed = report["estimate"], [g for g in report["groups"] if g["status"] != "ok"]
    missing = f"; {est['runs_without_estimate']} run(s) without one (dataset sizes unknown or check failed)" \
        if est["runs_without_estimate"] else ""
    print(f"smoke: {len(report['groups']) - len(failed)} of {len(report['groups'])} groups ok in {report['seconds']:.0f} s on "
          f"{report['device']}; the grid on this device: about {_hours(est['train_eval_hours'])} of training and "
          f"evaluation (an upper estimate) and {_hours(est['extraction_hours'])} of feature extraction{missing}")
    if args.json:
        write_json_atomic(args.json, report)
    return 1 if failed else 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(_resolve(args), sort_keys=False), end="")
    return 0


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", help="start from a named profile of moleflow/configs/ (e.g. cpu: the embedded default)")
    parser.add_argument("--config", help="YAML file of config keys (see moleflow/schemas/config.schema.yaml)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override one key (repeatable); the value is YAML: features.embed_dim=128, "
                             "dataset.categories=[cap,screw] (a list in brackets), scoring.map_sigma=2.5")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from moleflow import __version__

    parser = argparse.ArgumentParser(prog="moleflow", description="MoLE-Flow continual anomaly detection harness "
                                     "(the method as implemented: docs/method.md)")
    parser.add_argument("--version", action="version", version=f"moleflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write the generated default dataset in the MVTec AD layout")
    synth.add_argument("out", help="output folder")
    synth.add_argument("--seed", type=int, default=0, help="generator seed: every image and defect follows from it "
                       "(default 0; the embedded default's test data; tune on another seed)")
    synth.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    synth.add_argument("--categories", nargs="+", help="subset of: fabric wood tile cap screw pcb (default all six)")
    synth.add_argument("--train", type=int, default=40, help="normal training images per category (default 40)")
    synth.add_argument("--test-good", type=int, default=10, help="normal test images per category (default 10)")
    synth.add_argument("--test-defect", type=int, default=6, help="test images per defect type (default 6)")
    synth.set_defaults(func=_cmd_synth)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="validate a dataset copy and count its images")
    check.add_argument("--dataset", required=True, choices=["mvtec", "visa", "folder"],
                       help="layout: mvtec (MVTec AD as released, PNG), visa (VisA with split_csv/1cls.csv), "
                            "folder (the MVTec tree with any category names and image extensions)")
    check.add_argument("--root", required=True, help="folder holding the dataset copy")
    check.add_argument("--categories", nargs="+", help="categories to check (default every category found)")
    check.add_argument("--json", action="store_true", help="print one JSON object keyed by category")
    check.set_defaults(func=_cmd_data_check)
    baseline = data.add_parser("baseline", help="image AUROC of a per-pixel z-score detector (is the dataset too easy?)")
    baseline.add_argument("--dataset", required=True, choices=["mvtec", "visa", "folder"], help="layout (as data check)")
    baseline.add_argument("--root", required=True, help="folder holding the dataset copy")
    baseline.add_argument("--categories", nargs="+", help="categories (default every category found)")
    baseline.set_defaults(func=_cmd_data_baseline)

    features = sub.add_parser("features", help="backbone features").add_subparsers(dest="features_command", required=True)
    extract = features.add_parser("extract", help="extract and cache patch embeddings")
    _add_config_args(extract)
    extract.add_argument("--dataset", choices=["mvtec", "visa", "folder"], help="shortcut for --set dataset.kind=...")
    extract.add_argument("--root", help="shortcut for --set dataset.root=...")
    extract.add_argument("--categories", nargs="+", help="default: dataset.categories, else every category")
    extract.add_argument("--splits", nargs="+", default=["train", "test"], choices=["train", "test"],
                         help="which splits to extract (default both)")
    extract.add_argument("--quiet", action="store_true", help="no progress bar")
    extract.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's, one per core); the workflow passes the job's Snakemake threads")
    extract.add_argument("--record", help="write a JSON record of the cache entries here (the workflow's output)")
    extract.add_argument("--also-features", metavar="JSON", help="a JSON list of other whole `features` blocks to "
                         "extract too (the workflow passes the other resolutions its runs read)")
    extract.set_defaults(func=_cmd_features_extract)

    runp = sub.add_parser("run", help="one continual run: train every task, evaluate, write RUN_DIR/summary.json")
    _add_config_args(runp)
    runp.add_argument("--dataset", choices=["mvtec", "visa", "folder"], help="shortcut for --set dataset.kind=...")
    runp.add_argument("--root", help="shortcut for --set dataset.root=...")
    runp.add_argument("--config-json", help="the whole configuration as one JSON object (what the workflow passes)")
    runp.add_argument("--out", required=True, help="run directory (a rerun resumes after its last finished task)")
    runp.add_argument("--quiet", action="store_true", help="no progress bars (one line per task and the resume line stay)")
    runp.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's, one per core); the workflow passes the job's Snakemake threads")
    runp.set_defaults(func=_cmd_run)

    many = sub.add_parser("run-many", help="several runs one after the other in one process (what the workflow's training jobs call)")
    many.add_argument("--runs-json", required=True, metavar="JSON",
                      help='{"RUN_DIR": {the whole configuration}, ...} (or @FILE holding it); finished runs are skipped')
    many.add_argument("--quiet", action="store_true", help="no progress bars (one line per task stays)")
    many.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's, one per core); the workflow passes the job's Snakemake threads")
    many.set_defaults(func=_cmd_run_many)

    pred = sub.add_parser("predict", help="score new images with a trained run: routed task, score, anomaly map (and a decision)")
    pred.add_argument("--run", required=True, help="a run directory (its config.yaml and checkpoints are read)")
    pred.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files, or folders of images (not recursive)")
    pred.add_argument("--out", required=True, help="writes scores.csv, maps/<n>_<stem>.png, maps/scale.json, "
                      "overlays/<n>_<stem>.png, threshold.json (replacing an earlier predict's)")
    pred.add_argument("--task", help="score every image with this task (category name or index) instead of routing it")
    pred.add_argument("--threshold", type=float, help="decide 'anomalous' where the image score exceeds this value")
    pred.add_argument("--normal", metavar="FOLDER", help="held-out normal images: per task, the threshold is the "
                      "--quantile of their image scores (never anomalous images, never the run's test set)")
    pred.add_argument("--quantile", type=float, default=0.99, help="quantile of the normal images' scores (default 0.99)")
    pred.add_argument("--allow-training-normal", action="store_true", help="accept --normal images that are the run's "
                      "own training images (refused by default: their scores are low by construction)")
    pred.add_argument("--threads", type=_positive_int, help="torch threads (default: torch's, one per core)")
    pred.set_defaults(func=_cmd_predict)

    track = sub.add_parser("track", help="MLflow mirror of run directories").add_subparsers(dest="track_command", required=True)
    tinit = track.add_parser("init", help="create the MLflow store and experiments (once, before any run logs)")
    tinit.add_argument("--experiments", nargs="+", required=True, metavar="STUDY/DATASET",
                       help="the experiments to create (one per study and dataset)")
    tinit.set_defaults(func=_cmd_track_init)
    tlog = track.add_parser("log", help="log one run directory")
    tlog.add_argument("--run-dir", required=True, help="a finished run directory (its summary.json and files are logged)")
    tlog.add_argument("--experiment", action="append", required=True, metavar="STUDY/DATASET[=VARIANT]",
                      help="an experiment to log it into, with the variant's name (repeatable)")
    tlog.set_defaults(func=_cmd_track_log)
    tstudy = track.add_parser("study", help="log every run of one study and dataset into its experiment (one process)")
    tstudy.add_argument("--experiment", required=True, metavar="STUDY/DATASET", help="the experiment to log into")
    tstudy.add_argument("--run", action="append", required=True, metavar="RUN_DIR=VARIANT",
                        help="a run directory and its variant's name (repeatable)")
    tstudy.set_defaults(func=_cmd_track_study)
    for tracker in (tinit, tlog, tstudy):
        tracker.add_argument("--results", default="results", help="results folder (the default store is results/mlflow.db)")
        tracker.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite under --results)")
        tracker.add_argument("--record", help="write a JSON record here")

    plan = sub.add_parser("plan", help="count the runs a workflow configuration plans, per study (--smoke: check each kind)")
    plan.add_argument("configfile", help="workflow configuration (config/config.yaml, config/paper.yaml)")
    plan.add_argument("--smoke", action="store_true", help="run one step of each task kind and one evaluation of every "
                      "distinct kind of run at its real shapes on a stand-in dataset; print parameters, peak memory, "
                      "step times and the grid's estimated cost on this device (exit 1 if any check fails)")
    plan.add_argument("--device", default="auto", help="(--smoke) device of the checks: auto, cpu, cuda, cuda:1 (default auto)")
    plan.add_argument("--json", help="(--smoke) also write the full report as JSON here")
    plan.add_argument("--studies", nargs="+", metavar="STUDY", help="(--smoke) check only the runs of these studies")
    plan.add_argument("--threads", type=_positive_int, help="(--smoke) torch threads (default: torch's, one per core)")
    plan.set_defaults(func=_cmd_plan)

    config = sub.add_parser("config", help="configuration tools").add_subparsers(dest="config_command", required=True)
    show = config.add_parser("show", help="print the resolved configuration")
    _add_config_args(show)
    show.set_defaults(func=_cmd_config_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``moleflow`` console script."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except MoleflowError as exc:
        print(f"moleflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moleflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
