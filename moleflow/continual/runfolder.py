"""A trained run folder read back for use, checked against itself first.

A run folder is a contract: ``config.yaml`` is the configuration the checkpoints were
trained with (``checkpoints/progress.json`` records its hash), ``progress.json`` says
how many tasks were committed, and the checkpoint files hold exactly those tasks.
:func:`load_run` refuses, in one line naming the file, a folder that breaks it (a
config edited after training, a damaged or missing checkpoint or record), and says
which tasks a run that has not finished (``status.json``: running, failed,
interrupted) can serve.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from moleflow.config import Config, config_hash, differing_keys, load_saved_config, read_yaml
from moleflow.continual.checkpoint import committed_files, restore
from moleflow.continual.learner import Learner
from moleflow.device import resolve_device
from moleflow.errors import MoleflowError


@dataclass
class TrainedRun:
    """A run folder's configuration, its restored learner, the categories of its committed tasks and what to tell the user."""

    config: Config
    learner: Learner
    categories: list[str]
    device: torch.device
    notes: list[str] = field(default_factory=list)


def _json(path: Path, what: str) -> Any:
    """The JSON at ``path``; one line naming it when it is missing, truncated or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MoleflowError(f"--run: {path} is missing ({what})") from None
    except (OSError, ValueError) as exc:
        raise MoleflowError(
            f"--run: {path} is damaged ({what}: {str(exc).splitlines()[0]}); the run folder cannot be used as it is"
        ) from None


def _check_config(run: Path, state: dict[str, Any]) -> Config:
    """The run's configuration, refused when ``config.yaml`` is not the one its checkpoints were trained with."""
    saved = read_yaml(run / "config.yaml")
    held = state.get("config_hash")
    if (
        not isinstance(held, str)
        or not isinstance(state.get("completed"), int)
        or not isinstance(state.get("tasks"), list)
    ):
        raise MoleflowError(
            f"--run: {run / 'checkpoints' / 'progress.json'} is damaged (no config_hash, completed "
            "and tasks); the run folder cannot be used as it is"
        )
    if config_hash(saved) != held:
        try:
            trained = json.loads((run / "summary.json").read_text())["config"]
            keys = differing_keys(trained, saved)
        except (OSError, ValueError, KeyError, TypeError):
            keys = []
        verb = "differs" if len(keys) == 1 else "differ"
        which = f" ({', '.join(keys)} {verb} from the configuration it was trained with)" if keys else ""
        raise MoleflowError(
            f"--run: {run / 'config.yaml'} was changed after training{which}: its hash is "
            f"{config_hash(saved)}, the checkpoints' {held}; restore the file or train again"
        )
    return load_saved_config(run / "config.yaml")


def _status_note(run: Path, categories: list[str], total: int) -> str | None:
    """A line saying which tasks an unfinished run serves (``None`` for a finished run)."""
    try:
        status = json.loads((run / "status.json").read_text()).get("status", "unknown")
    except (OSError, ValueError, AttributeError):
        status = "unknown (status.json unreadable)"
    if status in ("ok", "diverged") and len(categories) == total:
        return None
    if status == "diverged":
        return (
            f"note: run {run} diverged after {len(categories)} of {total} tasks; images are routed among its "
            f"finished tasks only: {', '.join(categories)}"
        )
    return (
        f"note: run {run} is {status}, with {len(categories)} of {total} tasks finished; images are routed "
        f"among those only: {', '.join(categories)}"
    )


def _planned_tasks(state: dict[str, Any], completed: int) -> int:
    """How many tasks the run was to train: the side of its ``(T, T)`` accuracy matrices."""
    try:
        return max(completed, len(state["matrices"]["routed"]["image_auroc"]))
    except (KeyError, TypeError):
        return completed


def _restore(learner: Learner, ckpt: Path, completed: int) -> None:
    """:func:`restore`, with a missing or damaged checkpoint named in one line."""
    for name in committed_files(learner.strategy, completed):
        if not (ckpt / name).is_file():
            raise MoleflowError(
                f"--run: {ckpt / name} is missing, though progress.json records {completed} finished "
                "tasks; the run folder cannot be used as it is"
            )
        if not zipfile.is_zipfile(ckpt / name):  # torch.save writes a zip archive; a truncated one has no directory
            raise MoleflowError(
                f"--run: {ckpt / name} is damaged (truncated or not a torch checkpoint); the run "
                "folder cannot be used as it is"
            )
    try:
        restore(learner, ckpt, completed)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError) as exc:
        raise MoleflowError(
            f"--run: a checkpoint under {ckpt} is damaged or does not fit config.yaml "
            f"({str(exc).strip().splitlines()[0][:200]})"
        ) from None


def _check_fingerprints(learner: Learner, ckpt: Path, state: dict[str, Any], completed: int) -> None:
    """The restored tensors against the digests the run recorded after its last committed task
    (:func:`moleflow.continual.structure.fingerprints`): a checkpoint copied from another run, or changed
    after training, is refused naming the file. Runs that recorded no digest are not checked."""
    from moleflow.continual.structure import fingerprints

    recorded = next(
        (t.get("fingerprints") for t in reversed(state["tasks"][:completed]) if t.get("fingerprints")), None
    )
    if not isinstance(recorded, dict):
        return
    held_tasks = recorded.get("tasks") or []
    restored = fingerprints(learner.base_state(), learner.task_states(len(held_tasks)))
    whole = f"learner_{completed - 1}.pt"  # a strategy without per-task checkpoints keeps everything in one file
    per_task = learner.strategy.per_task_checkpoints
    found = [("base.pt" if per_task else whole, recorded.get("base"), restored["base"])]  # (file, recorded, restored)
    found += [
        (f"task_{t}.pt" if per_task else whole, held, now)
        for t, (held, now) in enumerate(zip(held_tasks, restored["tasks"], strict=True))
    ]
    for name, held, restored in found:
        if held != restored:
            raise MoleflowError(
                f"--run: {ckpt / name} does not hold the tensors this run recorded after training (digest {restored}, "
                f"recorded {held}): a checkpoint of another run, or changed since; the run folder cannot be used as it is"
            )


def _waiting(state: dict[str, Any], completed: int) -> list[str]:
    """(joint) The committed tasks that were only kept for the joint flow, never trained."""
    return [
        t["category"]
        for t in state["tasks"][:completed]
        if str(t.get("note", "")).startswith("not trained or measured")
    ]


def load_run(run_dir: str | Path) -> TrainedRun:
    """Restore the learner as it was after the run's last committed task, once the folder checks out.

    Raises:
        MoleflowError: one line naming the file at fault (see the module docstring).
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise MoleflowError(f"--run: no such run folder: {run}")
    if not (run / "config.yaml").is_file():
        raise MoleflowError(f"--run: {run} holds no config.yaml: not a run folder")
    state = _json(run / "checkpoints" / "progress.json", "the record of the finished tasks")
    if not isinstance(state, dict):
        raise MoleflowError(f"--run: {run / 'checkpoints' / 'progress.json'} is damaged (not a JSON object)")
    config = _check_config(run, state)
    categories = [t["category"] for t in state["tasks"][: state["completed"]]]
    if not categories:
        raise MoleflowError(f"--run: {run} holds no finished task")
    total = _planned_tasks(state, len(categories))
    waiting = _waiting(state, len(categories))
    if waiting and len(waiting) == len(categories):
        raise MoleflowError(
            f"--run: {run} is a joint flow that has not trained yet ({len(categories)} of {total} tasks kept, "
            f"{', '.join(waiting)}: it trains once, after the last task); nothing to serve"
        )
    device = resolve_device(config["device"], f"{run / 'config.yaml'}: device")
    learner = Learner.from_config(config, int(config["features"]["embed_dim"]))
    for _ in categories:
        learner.add_task(None)  # the prototypes come from the checkpoint
    _restore(learner, run / "checkpoints", len(categories))
    _check_fingerprints(learner, run / "checkpoints", state, len(categories))
    note = _status_note(run, categories, total)
    return TrainedRun(config, learner.to(device).eval(), categories, device, [note] if note else [])
