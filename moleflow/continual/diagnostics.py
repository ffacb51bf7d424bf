"""The input-collapse diagnostic of a trained flow (``input_collapse`` in each task's record).

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

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from moleflow.continual.learner import Learner
from moleflow.continual.tasks import PatchRows, TaskData
from moleflow.features.cache import float32_rows

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
    learner: Learner,
    task: int,
    train: np.ndarray | PatchRows,
    tests: list[TaskData],
    seed: int,
    device: torch.device,
    batch: int = 16,
) -> dict[str, Any]:
    """The diagnostic of the model serving ``task`` (see the module's docstring).

    Args:
        train: the task's training patches ``(N, H, W, D)`` (the joint flow's: every task's).
        tests: the test sets whose normal and defect patches are compared (the joint flow's: every task's).
    """
    model, local = learner.model_for(task)
    height, width = int(train.shape[1]), int(train.shape[2])
    rng = np.random.default_rng([seed, task, 0xD1A6])
    rows = np.sort(rng.permutation(len(train))[:MAX_TRAIN_IMAGES])
    features, inputs, nll_train = _Moments(), _Moments(), []
    for start in range(0, len(rows), batch):
        x = torch.from_numpy(float32_rows(train[rows[start : start + batch]])).to(device)
        features.add(x.reshape(-1, x.shape[-1]))
        inputs.add(model.preprocess(x, local).reshape(-1, x.shape[-1]))
        nll_train.append(learner.patch_scores(task, x).reshape(-1).cpu().numpy())
    good, defect = [], []
    for data in tests:
        labels, masks = np.asarray(data.test.labels), np.asarray(data.test.masks)
        cells = _defect_cells(masks, height, width) if masks.size else np.zeros((len(labels), height, width), bool)
        for start in range(0, len(labels), batch):
            chunk = slice(start, start + batch)
            x = torch.from_numpy(float32_rows(data.test.patches[chunk])).to(device)
            nll = learner.patch_scores(task, x).cpu().numpy()  # the model serving the task (oracle)
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
