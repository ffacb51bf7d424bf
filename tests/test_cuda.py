"""CUDA against the CPU, and CUDA against itself. Skipped without a CUDA device; run whenever one is there.

Tolerances (stated, not tuned on a result): an untrained learner's patch scores on CUDA equal the CPU's
to 1e-4 relative (float32 matmuls in another order, TF32 off); after training, each epoch's mean loss
within 1e-3 relative and each category's pixel AUROC within 0.01 (thousands of pixels: a smooth
metric); two CUDA runs of one configuration agree to 1e-6 (deterministic algorithms and cuBLAS
workspace, as ``moleflow run`` sets them).
"""

from __future__ import annotations

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before CUDA is initialised in this process

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from moleflow.config import load_config, load_profile  # noqa: E402
from moleflow.continual import Learner, run  # noqa: E402
from moleflow.data.synth import SynthCounts, generate  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _config(root: Path, cache: Path, device: str) -> dict:
    return load_config(
        overrides=[
            f"dataset.root={root}",
            f"features.cache_dir={cache}",
            "features.resize=64",
            "features.input_size=64",
            "features.embed_dim=16",
            "model.coupling_blocks=2",
            "model.lora_rank=4",
            "training.epochs=2",
            "training.batch_size=4",
            "evaluation.sample_images=0",
            f"device={device}",
        ],
        base=load_profile("cpu"),
    )


def test_untrained_learner_scores_equal_on_cuda_and_cpu() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    config = load_config(
        overrides=["dataset.root=.", "model.coupling_blocks=2", "model.lora_rank=4"], base=load_profile("cpu")
    )
    learner = Learner.from_config(config, 16)
    learner.add_task(np.random.default_rng(0).normal(size=(32, 16)))
    x = torch.randn(3, 8, 8, 16, generator=torch.Generator().manual_seed(0))
    on_cpu = learner.patch_scores(0, x)
    on_gpu = learner.to("cuda").patch_scores(0, x.to("cuda")).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-4, atol=1e-4)


def test_cuda_run_matches_cpu_and_repeats(tmp_path: Path) -> None:
    root = tmp_path / "data"
    generate(
        root, seed=0, size=64, categories=["cap", "tile"], counts=SynthCounts(train=8, test_good=3, test_per_defect=2)
    )
    runs = {
        name: run(
            _config(root, tmp_path / f"cache-{name}", device), tmp_path / name, progress=False, log=lambda *a: None
        )
        for name, device in (("cpu", "cpu"), ("cuda", "cuda"), ("cuda-again", "cuda"))
    }
    assert all(s["status"] == "ok" for s in runs.values()) and runs["cuda"]["environment"]["device"].startswith("cuda")
    for cpu_task, gpu_task in zip(runs["cpu"]["per_task"], runs["cuda"]["per_task"]):
        np.testing.assert_allclose(gpu_task["epoch_losses"], cpu_task["epoch_losses"], rtol=1e-3)
    for category in runs["cpu"]["final"]:
        for mode in ("routed", "oracle"):
            cpu, gpu = runs["cpu"]["final"][category][mode], runs["cuda"]["final"][category][mode]
            assert abs(gpu["pixel_auroc"] - cpu["pixel_auroc"]) <= 0.01, (category, mode)
            again = runs["cuda-again"]["final"][category][mode]
            assert all(abs(again[m] - gpu[m]) <= 1e-6 for m in gpu), (category, mode)
