"""Reading a Prometheus text exposition in tests."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted label items) -> value of every sample of an exposition."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, metric: str, /, **labels) -> float | None:
    """One sample's value (None when the exposition has no such series); ``labels`` may hold
    one called ``name`` (a task's)."""
    return found.get((metric, tuple(sorted(labels.items()))))


def series(found: dict, name: str) -> dict[tuple, float]:
    """Every series of one sample name: sorted label items -> value."""
    return {labels: v for (n, labels), v in found.items() if n == name}


def scrape(client) -> dict:
    """GET /metrics through a Flask test client, parsed."""
    resp = client.get("/metrics")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return samples(resp.get_data(as_text=True))
