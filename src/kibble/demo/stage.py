"""What a demo stage returns, the line it shows, and the small helpers the stages share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

STAGES = ("experts", "cards", "dataset", "train", "eval", "report")


@dataclass(kw_only=True)
class StageResult:
    """What a stage did: made or reused its output, how long it took, what it found."""

    stage: str
    reused: bool
    seconds: float
    summary: str
    details: list[str] = field(default_factory=list)

    def lines(self, number: int) -> list[str]:
        """``[3/6] dataset: curated ... (12 s)``, then a line per detail, indented."""
        head = f"[{number}/{len(STAGES)}] {self.stage}: {self.summary} ({duration(self.seconds)})"
        return [head, *(f"    {line}" for line in self.details)]


def duration(seconds: float) -> str:
    """``42 s`` or ``12.3 min``."""
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def fmt(x: Any, digits: int = 1) -> str:
    """A number with ``digits`` decimals, or ``n/a``."""
    return f"{x:.{digits}f}" if finite(x) else "n/a"


def in_order(by_task: dict[str, Any], tasks: list[str]) -> list[tuple[str, Any]]:
    """Per-task entries in the demo's task order (unknown tasks last)."""
    order = {task: i for i, task in enumerate(tasks)}
    return sorted(by_task.items(), key=lambda kv: order.get(kv[0], len(order)))


def set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
