"""Peak memory of a block of work: CUDA's allocator peak, or the growth of the process's resident set."""

from __future__ import annotations

import ctypes
import gc
import threading


class PeakMemory:
    """Peak memory of what runs inside the block, in MiB: CUDA's allocator peak, or the process's RSS growth (sampled)."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.peak_mib = float("nan")

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        import psutil

        try:  # give freed heap memory back to the system, so that what the block allocates shows as growth
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc: the growth is then a lower bound
            pass
        process = psutil.Process()
        self._base = process.memory_info().rss
        self._peak = self._base
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.01):
                self._peak = max(self._peak, process.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated() / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.peak_mib = (self._peak - self._base) / 2**20
