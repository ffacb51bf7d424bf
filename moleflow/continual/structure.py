"""Structural records of a run, taken after each task: fingerprints, invertibility and input collapse.

These are what the claims audit reads for the paper's structural claims:

- :func:`fingerprints`: a SHA-256 digest of the shared base's tensors and of each
  trained task's own tensors (adapters or whole model, and router prototype). With a
  frozen base, the base's digest after every later task equals its digest after task 0,
  and each task's digest never changes after its own task.
- :func:`invertibility`: on real patches of each trained task, the round trip
  ``u -> z -> u`` of the flow and the adapters (float32, as the run computes it), and the
  coded log-determinant against ``log|det J|`` of the autograd Jacobian (float64 copy of
  the model, on a crop of at most :data:`JACOBIAN_DIMS` values, so the check measures the
  formula rather than float32 rounding).
- :func:`input_collapse`: the diagnostic of a trained flow's input maps (``input_collapse`` in each task's
  record).

The trainable maps in front of the flow (the whitening adapter's affine and the spatial
mixer) pay no Jacobian under ``model.input_jacobian: excluded``, so training can shrink the
flow's input ``u`` to raise every patch's likelihood for free, until normal and defective
patches score alike. After each trained task this measures, on the model serving it:

* the maps' log-volume per patch (``mixer_logdet``, ``whitening_logdet``, their sum
  ``input_logdet``: what ``included`` adds to ``log p``), the mixer's gate and the mean
  coefficient of a patch on itself in the mixer's output (``(1 - a) + a w_centre``);
* the spectrum of the flow input's covariance over training patches against the features'
  (``input_eig_median``, ``input_eig_p05``, ``feature_eig_median`` and their ratio; the
  layer-normalised features have a zero direction, so the smallest eigenvalue says nothing);
* the patch NLL (under the run's own objective) of training patches, of test patches of
  normal images and of defect patches (at least half of the patch's cell inside the defect
  mask), and the separation ``(nll_defect - nll_good) / sd_good`` in units of the normal
  patches' spread;
* ``collapsed``: the rule :func:`collapsed` states, on the maps' log-volume per patch and
  channel (chosen on the validation copy of the generator, ``benchmarks/OBJECTIVE.md``).
"""

from __future__ import annotations

import copy
import hashlib
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from moleflow.continual.tasks import PatchRows, TaskData, rows_on
from moleflow.model import MoLEFlow

JACOBIAN_DIMS = (
    256  # crop cells x D of the log-det check (one cell at least): a Jacobian of at most 256 x 256 for D <= 256
)
ROUND_TRIP_IMAGES = 4  # test images per task in the round-trip check


def digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 (first 16 hex digits) over the names, dtypes, shapes and bytes of ``tensors`` in name order."""
    sha = hashlib.sha256()
    for name in sorted(tensors):
        value = tensors[name].detach().cpu().contiguous().reshape(-1)
        sha.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        sha.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return sha.hexdigest()[:16]


def fingerprints(base: dict[str, torch.Tensor], tasks: list[dict[str, torch.Tensor]]) -> dict[str, Any]:
    """``{"base": digest of the shared base's tensors or None (none), "tasks": [digest of each task's own tensors]}``."""
    return {"base": digest(base) if base else None, "tasks": [digest(state) for state in tasks]}


def _crop(u: torch.Tensor) -> torch.Tensor:
    """The top-left ``(1, h, w, D)`` crop of one image with ``h * w * D <= JACOBIAN_DIMS`` (at least one cell)."""
    _, height, width, dim = u.shape
    cells = max(1, JACOBIAN_DIMS // dim)
    h = min(height, max(1, int(math.isqrt(cells))))
    w = min(width, max(1, cells // h))
    return u[:1, :h, :w, :]


def _logdet_check(model: MoLEFlow, task: int, u: torch.Tensor) -> tuple[float, float]:
    """``(|coded - autograd| log-det, |coded|)`` of ``model.transform`` on crop ``u`` in float64."""
    double = copy.deepcopy(model).cpu().double()
    x = _crop(u).double()

    def flat(v: torch.Tensor) -> torch.Tensor:
        return double.transform(v.reshape(x.shape), task)[0].reshape(-1)

    # torch.func's vmapped reverse mode: one batched backward pass for all rows of the Jacobian
    # (about 15 times faster than torch.autograd.functional.jacobian's vectorize=True here)
    jacobian = torch.func.jacrev(flat)(x.reshape(-1))
    _, logabs = torch.linalg.slogdet(jacobian)
    with torch.no_grad():
        _, ld_flow, ld_dia = double.transform(x, task)
    coded = float((ld_flow + ld_dia).sum().detach())
    return abs(coded - float(logabs.detach())), abs(coded)


@torch.no_grad()
def _round_trip(model: MoLEFlow, task: int, u: torch.Tensor) -> tuple[float, float, float]:
    """``(max |u - f^-1(f(u))|, max |u|, max |logdet f + logdet f^-1|)`` per patch, float32."""
    z, ld_flow, ld_dia = model.transform(u, task)
    back, inv_flow, inv_dia = model.transform(z, task, rev=True)
    return (
        float((back - u).abs().max()),
        float(u.abs().max()),
        float((ld_flow + ld_dia + inv_flow + inv_dia).abs().max()),
    )


def invertibility(
    models: list[tuple[MoLEFlow, int]], patches: list[np.ndarray], device: torch.device
) -> dict[str, Any] | None:
    """Round-trip and log-det errors of every trained task's map on its own test patches.

    Args:
        models: per trained task ``t``, the model serving it and the task id inside it (none: no flow); the last
            is the task just trained.
        patches: per task ``t``, its test patch maps ``(N, H, W, D)``.

    Returns:
        ``None`` for the kNN reference (no flow); else per task the errors and their maxima:
        ``reconstruction`` (max abs, float32, relative to the largest input value in
        ``reconstruction_scale``), ``inverse_logdet`` (log-det of the map plus that of its
        inverse, which is 0 for an exact pair) and, for the task just trained,
        ``logdet_autograd`` (|coded - autograd| on a float64 crop, with the coded value's
        size in ``logdet_scale``; None for the earlier tasks, checked after their own task).
    """
    if not models:
        return None
    per_task: list[dict[str, Any]] = []
    for task, (model, local) in enumerate(models):
        x = rows_on(patches[task][:ROUND_TRIP_IMAGES], device)
        with torch.no_grad():
            u = model.preprocess(x, local)
        recon, scale, inverse_ld = _round_trip(model, local, u)
        # the autograd Jacobian only for the task just trained (earlier tasks had theirs after their own task)
        ld_error, ld_scale = _logdet_check(model, local, u.cpu()) if task == len(models) - 1 else (None, None)
        per_task.append(
            {
                "task": task,
                "reconstruction": recon,
                "reconstruction_scale": scale,
                "inverse_logdet": inverse_ld,
                "logdet_autograd": ld_error,
                "logdet_scale": ld_scale,
            }
        )
    last = per_task[-1]
    return {
        "tasks": per_task,
        "max_reconstruction": max(t["reconstruction"] for t in per_task),
        "max_relative_reconstruction": max(
            t["reconstruction"] / max(t["reconstruction_scale"], 1e-12) for t in per_task
        ),
        "max_inverse_logdet": max(t["inverse_logdet"] for t in per_task),
        "logdet_autograd": last["logdet_autograd"],
        "relative_logdet_autograd": last["logdet_autograd"] / max(1.0, last["logdet_scale"]),
    }


#: Training images whose patches enter the spectrum and the training NLL (a fixed draw from (seed, task)).
MAX_TRAIN_IMAGES = 48
#: The rule's limit (see :func:`collapsed`): the maps shrink each direction e^4 (about 55) times on average.
LOGVOLUME_LIMIT = -4.0


def collapsed(logvolume_per_channel: float) -> bool:
    """The collapse rule: the trainable maps in front of the flow shrink the volume of its input by more than
    ``exp(-LOGVOLUME_LIMIT)`` per patch and channel (their log-determinant per patch, divided by ``D``, below
    ``LOGVOLUME_LIMIT``).

    On the validation copy (``benchmarks/OBJECTIVE.md``) every MoLE-Flow run stays above -2.1 (60 epochs
    included) and the joint flow's runs at chance sit below -5.7; the limit lies between them. The rule reads
    the mechanism (the volume the objective does not pay for), not the separation it destroys, so a hard but
    healthy category with little separation is not flagged.
    """
    return bool(logvolume_per_channel < LOGVOLUME_LIMIT)


class _Moments:
    """Running count, sum and sum of outer products of ``(N, D)`` rows, in float64."""

    def __init__(self) -> None:
        self.n = 0
        self.total: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.to(torch.float64)
        self.n += rows.shape[0]
        s, o = rows.sum(dim=0), rows.T @ rows
        self.total = s if self.total is None else self.total + s
        self.outer = o if self.outer is None else self.outer + o

    def eigenvalues(self) -> np.ndarray:
        """Ascending eigenvalues ``(D,)`` of the sample covariance."""
        assert self.total is not None and self.outer is not None
        mean = self.total / self.n
        cov = (self.outer - self.n * torch.outer(mean, mean)) / max(self.n - 1, 1)
        return torch.linalg.eigvalsh(cov).cpu().numpy()


def _defect_cells(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(N, H, W)`` bool: grid cells at least half inside the defect mask of ``(N, S, S)`` masks."""
    share = F.adaptive_avg_pool2d(torch.from_numpy(masks.astype(np.float32))[:, None], (height, width))[:, 0]
    return (share >= 0.5).numpy()


@torch.no_grad()
def input_collapse(
    model: MoLEFlow,
    local: int,
    task: int,
    train: np.ndarray | PatchRows,
    tests: list[TaskData],
    seed: int,
    device: torch.device,
    batch: int = 16,
    test_nll: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """The diagnostic of ``model``, serving task ``task`` as its task ``local`` (see the module's docstring).

    Args:
        train: the task's training patches ``(N, H, W, D)`` (the joint flow's: every task's).
        tests: the test sets whose normal and defect patches are compared (the joint flow's: every task's).
        test_nll: per test set, its patch NLL ``(N, H, W)`` under this model as the run's evaluation computed it
            (its oracle scores: on the CPU bit for bit what passes here in batches of ``batch`` give, since the
            flow treats each image alone); ``None``: computed here.
    """
    height, width = int(train.shape[1]), int(train.shape[2])
    rng = np.random.default_rng([seed, task, 0xD1A6])
    rows = np.sort(rng.permutation(len(train))[:MAX_TRAIN_IMAGES])
    features, inputs, nll_train = _Moments(), _Moments(), []
    for start in range(0, len(rows), batch):
        x = rows_on(train[rows[start : start + batch]], device)
        features.add(x.reshape(-1, x.shape[-1]))
        inputs.add(model.preprocess(x, local).reshape(-1, x.shape[-1]))
        nll_train.append((-model(x, local).log_prob).reshape(-1).cpu().numpy())
    good, defect = [], []
    for k, data in enumerate(tests):
        labels, masks = np.asarray(data.test.labels), np.asarray(data.test.masks)
        cells = _defect_cells(masks, height, width) if masks.size else np.zeros((len(labels), height, width), bool)
        for start in range(0, len(labels), batch):
            chunk = slice(start, start + batch)
            if test_nll is not None:
                nll = test_nll[k][chunk]
            else:
                x = rows_on(data.test.patches[chunk], device)
                nll = (-model(x, local).log_prob).cpu().numpy()  # the model serving the task (oracle)
            normal = labels[chunk] == 0
            good.append(nll[normal].reshape(-1))
            defect.append(nll[~normal][cells[chunk][~normal]])
    eig_x, eig_u = features.eigenvalues(), inputs.eigenvalues()
    good_nll, defect_nll = np.concatenate(good), np.concatenate(defect)
    sd = float(good_nll.std(ddof=1)) if good_nll.size > 1 else float("nan")
    separation = float((defect_nll.mean() - good_nll.mean()) / sd) if defect_nll.size and sd > 0 else None
    ratio = float(np.median(eig_u) / np.median(eig_x)) if np.median(eig_x) > 0 else float("nan")
    logdets = _logdets(model, local, height, width)
    per_channel = float(logdets["input_logdet"] or 0.0) / train.shape[-1]
    return {
        **logdets,
        "feature_eig_median": float(np.median(eig_x)),
        "input_eig_median": float(np.median(eig_u)),
        "input_eig_p05": float(np.percentile(eig_u, 5)),
        "eig_median_ratio": ratio,
        "nll_train": float(np.concatenate(nll_train).mean()),
        "nll_good": float(good_nll.mean()) if good_nll.size else None,
        "nll_defect": float(defect_nll.mean()) if defect_nll.size else None,
        "separation": separation,
        "logvolume_per_channel": per_channel,
        "collapsed": collapsed(per_channel),
    }


def _logdets(model: Any, task: int, height: int, width: int) -> dict[str, float | None]:
    """The input maps' log-volumes per patch, the mixer's gate and its mean coefficient of a patch on itself."""
    mixer = model.mixer_logdet(height, width)
    whitening = None
    if model.whitening is not None:
        whitening = float(torch.log(model.whitening.gamma_beta(task)[0]).sum())
    gate = coefficient = None
    if model.mixer is not None:
        a = float(torch.sigmoid(model.mixer.theta))
        k = model.mixer.conv.weight.shape[-1]
        centre = model.mixer.conv.weight[:, 0, k // 2, k // 2]
        gate, coefficient = a, float(((1.0 - a) + a * centre).mean())
    total = (float(mixer) if mixer is not None else 0.0) + (whitening or 0.0)
    return {
        "mixer_logdet": float(mixer) if mixer is not None else None,
        "whitening_logdet": whitening,
        "input_logdet": total,
        "mixer_gate": gate,
        "mixer_self_coefficient": coefficient,
    }
