"""Prometheus metrics of one service, served at GET /metrics.

With several worker processes (supervisor.py), prometheus_client's multiprocess mode: each process
writes its values to files in $PROMETHEUS_MULTIPROC_DIR, and whichever worker answers /metrics
adds them all up, so the answer is the same from any of them.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The service's counters, each moved where the thing it counts happens.

    `registry` holds them (a new one of their own by default: tests run several services in one
    process). `multiprocess` says this process is one worker of several: prometheus_client then
    writes every value to files (it reads $PROMETHEUS_MULTIPROC_DIR once, when imported), and the
    answer to /metrics adds up every worker's.
    """

    def __init__(self, registry: CollectorRegistry | None = None, multiprocess: bool = False):
        self.registry = registry if registry is not None else CollectorRegistry()
        self._children = {}
        self.multiprocess = multiprocess
        # (gauge, function) of the gauges that show a value the service holds (see watch()).
        self._watched = []
        self.events_inserted = Counter(
            "attolytics_events_inserted", "Events committed.", ["app", "table"], registry=self.registry
        )
        self.events_duplicate = Counter(
            "attolytics_events_duplicate", "Events skipped because their id is stored already.",
            ["app", "table"], registry=self.registry,
        )
        self.events_kept_rejected = Counter(
            "attolytics_events_kept_rejected", "Events of refused requests kept in the rejected_events table.",
            ["app"], registry=self.registry,
        )
        self.rejected_dropped = Counter(
            "attolytics_rejected_events_dropped", "Events of refused requests that could not be kept.",
            ["app"], registry=self.registry,
        )
        self.events_rejected = Counter(
            "attolytics_events_rejected", "Events of requests that were refused.", ["app", "reason"],
            registry=self.registry,
        )
        self.requests = Counter(
            "attolytics_requests", "HTTP requests answered.", ["route", "status"], registry=self.registry
        )
        self.request_seconds = Histogram(
            "attolytics_request_seconds", "Time from a request's first line to its answer.",
            registry=self.registry,
        )
        self.writer_queue_rows = Gauge(
            "attolytics_writer_queue_rows", "Rows accepted and not yet committed.", registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.writer_queue_limit_rows = Gauge(
            "attolytics_writer_queue_limit_rows", "Rows that may wait to be committed (max_queued_rows); "
            "past it, 503.", registry=self.registry, multiprocess_mode="livesum",
        )
        self.writer_batch_rows = Histogram(
            "attolytics_writer_batch_rows", "Rows per transaction written.",
            buckets=(1, 10, 100, 1000, 5000, 20000), registry=self.registry,
        )
        self._add_upkeep_metrics()
        self.database_ready = Gauge(
            "attolytics_database_ready", "1 when the tables are checked and a connection is up.",
            registry=self.registry, multiprocess_mode="livemin",
        )

    def _add_upkeep_metrics(self) -> None:
        """The metrics of a service that runs for months: reloads and partitions."""
        self.config_reloads = Counter(
            "attolytics_config_reloads", "Reloads of the configuration (SIGHUP), applied or refused.",
            ["result"], registry=self.registry,
        )
        self.config_loaded = Gauge(
            "attolytics_config_loaded_timestamp_seconds", "When the configuration in force was loaded.",
            registry=self.registry, multiprocess_mode="livemin",
        )
        self.partitions = Gauge(
            "attolytics_partitions", "Partitions of a table partitioned by time.", ["table"],
            registry=self.registry, multiprocess_mode="livemax",
        )
        self.partitions_missing = Gauge(
            "attolytics_partitions_missing", "Partitions of a table partitioned by time that should exist "
            "by now (the current interval's and those ahead) and do not.", ["table"],
            registry=self.registry, multiprocess_mode="livemax",
        )
        self.partitions_dropped = Counter(
            "attolytics_partitions_dropped", "Partitions dropped, with their rows, once older than keep.",
            ["table"], registry=self.registry,
        )

    def child(self, metric, *labels):
        """`metric.labels(*labels)`, looked up once: labels() checks and locks on every call."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def watch(self, gauge, function) -> None:
        """Let `gauge` show what `function()` says whenever the metrics are read."""
        if self.multiprocess:  # read from files: refresh() writes the value there
            self._watched.append((gauge, function))
        else:
            gauge.set_function(function)

    def refresh(self) -> None:
        """Write the watched gauges' values for the other workers to read (multiprocess mode)."""
        for gauge, function in self._watched:
            gauge.set(function())

    def render(self) -> bytes:
        """The metrics in Prometheus' text format: this process's, or every worker's."""
        if not self.multiprocess:
            return generate_latest(_WithoutCreated(self.registry))
        self.refresh()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(_WithoutCreated(registry))


class _WithoutCreated:
    """A registry's metrics without their `_created` samples: operators read what counters count,
    not a timestamp series beside each (prometheus_client's own switch for this is process-wide)."""

    def __init__(self, registry):
        self.registry = registry

    def collect(self):
        """The registry's metric families, each without its `_created` samples."""
        for family in self.registry.collect():
            family.samples = [sample for sample in family.samples if not sample.name.endswith("_created")]
            yield family

