"""Reading /metrics as Prometheus would."""

from prometheus_client.parser import text_string_to_metric_families


async def scrape(client) -> dict:
    """{(sample name, frozenset(labels)): value} from GET /metrics."""
    answer = await client.request("GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.body.decode())
        for sample in family.samples
    }


def value(metrics: dict, name: str, **labels) -> float:
    """The value of one sample, 0 when it is not there."""
    return metrics.get((name, frozenset(labels.items())), 0.0)
