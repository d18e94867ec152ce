"""The benchmarks' result rows and the Markdown table they are printed as, shared by
``benchmarks.run`` and ``benchmarks.console`` (each can run alone)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Row:
    backend: str
    figure: str
    value: str
    goal: str = "—"
    ok: bool | None = None   # None: information, no goal

    @property
    def verdict(self) -> str:
        return "—" if self.ok is None else ("PASS" if self.ok else "MISS")


def print_table(rows: list[Row]) -> str:
    head = ("backend", "figure", "value", "goal", "result")
    cells = [head] + [(r.backend, r.figure, r.value, r.goal, r.verdict) for r in rows]
    lines = ["| " + " | ".join(c) + " |" for c in cells]
    lines.insert(1, "|" + "|".join("---" for _ in head) + "|")
    return "\n".join(lines)
