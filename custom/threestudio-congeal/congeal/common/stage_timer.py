"""Times the stages of a run and reports their peak memory.

    timer = StageTimer(torch.device("cpu"), on_stage=print)
    bank = timer.run("candidates", lambda: build_bank())   # -> {"stage", "seconds", "peak_memory_mb", "device"}
"""
import time
from typing import Any, Callable, Dict, List, Optional

import torch


class StageTimer:
    """Runs named stages, timing each and reporting peak memory (CUDA: max allocated; CPU: process max RSS)."""

    def __init__(self, device: torch.device, on_stage: Optional[Callable[[Dict[str, Any]], None]] = None):
        self.device, self.on_stage = device, on_stage
        self.records: List[Dict[str, Any]] = []

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """Call `fn()` as stage `name`; its record goes to `records` and to `on_stage`."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        value = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            import resource

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
        record = {"stage": name, "seconds": round(time.perf_counter() - start, 3), "peak_memory_mb": round(peak, 1),
                  "device": self.device.type}
        self.records.append(record)
        if self.on_stage is not None:
            self.on_stage(record)
        return value
