"""What a benchmark section reports: figures with their targets, and the context a section runs in."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Figure:
    """One measured figure. ``value`` is already the median over the section's runs."""

    section: str  # "cold_start", "throughput", "erp_calls", "spike", "isolation", "cost"
    name: str  # e.g. "time_posting import vs import boto3"
    value: float
    unit: str  # "ms", "MiB", "x", "entries/s", "requests/1000 entries", "USD"
    target: float | None = None
    better: Literal["lower", "higher"] = "lower"
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool | None:
        """Whether the figure meets its target (``None`` when it has none)."""
        if self.target is None:
            return None
        return self.value <= self.target if self.better == "lower" else self.value >= self.target

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@dataclass
class BenchContext:
    """What every section gets: where to write, how hard to try, and what earlier sections found."""

    repo_root: Path
    out_dir: Path
    quick: bool = False
    repeats: int = 5
    results: dict[str, list[Figure]] = field(default_factory=dict)

    def figure(self, section: str, name: str) -> Figure | None:
        """A figure an earlier section of this run reported (``None`` if it did not run)."""
        return next((f for f in self.results.get(section, []) if f.name == name), None)


def median(samples: Iterable[float]) -> float:
    values = list(samples)
    if not values:
        raise ValueError("median of no samples")
    return float(statistics.median(values))
