"""Counters and gauges in Prometheus' text format (0.0.4), without a client library.

Label values come from small closed sets (known providers, outcomes) so the series stay bounded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import ClassVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

KNOWN_PROVIDERS = frozenset({"runpod", "kie", "replicate", "orfeas", "generic"})


def provider_label(provider: str) -> str:
    return provider if provider in KNOWN_PROVIDERS else "other"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    _HELP: ClassVar[dict[str, tuple[str, str]]] = {
        "orfeas_callbacks_total": ("counter", "Callbacks received, by provider and outcome."),
        "orfeas_callbacks_rejected_total": ("counter", "Callbacks refused as not authentic."),
        "orfeas_callback_parse_misses_total": ("counter", "Callbacks in which no task id was found."),
        "orfeas_upstream_calls_total": ("counter", "Calls to the RunPod endpoint, by operation and result."),
        "orfeas_deliveries_total": ("counter", "Client webhook delivery attempts, by result."),
        "orfeas_leader": ("gauge", "1 while this instance holds the leader lease."),
        "orfeas_store_ready": ("gauge", "1 once the store is open."),
    }

    def __init__(self) -> None:
        self._values: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self.set("orfeas_leader", 0)
        self.set("orfeas_store_ready", 0)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self._values[name]
        series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values[name][tuple(sorted(labels.items()))] = value

    def value(self, name: str, **labels: str) -> float:
        return self._values.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(self._HELP):
            kind, text = self._HELP[name]
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            lines += self._samples(name, self._values.get(name, {}).items())
        return "\n".join(lines) + "\n"

    @staticmethod
    def _samples(name: str, series: Iterable[tuple[tuple[tuple[str, str], ...], float]]) -> list[str]:
        out = []
        for labels, value in sorted(series):
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            out.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")
        return out
