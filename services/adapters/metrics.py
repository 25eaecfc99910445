"""Prometheus metrics of one service, in the text exposition format: counters, gauges and
timings (count, sum, max). Small on purpose: a handful of numbers per service, no labels
beyond the name, nothing to register."""

from __future__ import annotations

from collections import defaultdict


class Metrics:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.counters: defaultdict[str, float] = defaultdict(float)
        self.gauges: dict[str, float] = {}
        self._timings: dict[str, list[float]] = {}  # name -> [count, sum, max]

    def inc(self, name: str, by: float = 1) -> None:
        self.counters[name] += by

    def set(self, name: str, value: float) -> None:
        self.gauges[name] = value

    def observe(self, name: str, seconds: float) -> None:
        timing = self._timings.setdefault(name, [0.0, 0.0, 0.0])
        timing[0] += 1
        timing[1] += seconds
        timing[2] = max(timing[2], seconds)

    def render(self) -> str:
        lines: list[str] = []
        for name, value in sorted(self.counters.items()):
            lines += [f"# TYPE {self.prefix}_{name} counter", f"{self.prefix}_{name} {value:g}"]
        for name, value in sorted(self.gauges.items()):
            lines += [f"# TYPE {self.prefix}_{name} gauge", f"{self.prefix}_{name} {value:g}"]
        for name, (count, total, peak) in sorted(self._timings.items()):
            full = f"{self.prefix}_{name}_seconds"
            lines += [
                f"# TYPE {full} summary",
                f"{full}_count {count:g}",
                f"{full}_sum {total:.6f}",
                f"# TYPE {full}_max gauge",
                f"{full}_max {peak:.6f}",
            ]
        return "\n".join(lines) + "\n"
