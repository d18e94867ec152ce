"""Prometheus metrics, one registry per app so tests can build several apps."""
from __future__ import annotations

import hmac

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.syncs = Counter("cookiesync_syncs_total", "Extension syncs by outcome", ["outcome"], registry=r)
        self.syncs_unchanged = self.syncs.labels("unchanged")  # resolved once: counted on every sync
        self.syncs_changed = self.syncs.labels("changed")
        self.unipile_calls = Histogram(
            "cookiesync_unipile_call_seconds", "Unipile calls by endpoint and HTTP status", ["endpoint", "status"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30), registry=r)
        self.attempts = Counter("cookiesync_attempts_total", "Connect/reconnect attempts by outcome",
                                ["kind", "outcome"], registry=r)
        self.unipile_backoffs = Counter("cookiesync_unipile_backoffs_total",
                                        "Pauses of all calls to Unipile after a burst of 429s", registry=r)
        self.give_ups = Counter("cookiesync_give_ups_total", "Incidents given up to the user", registry=r)
        self.alerts = Counter("cookiesync_operator_alerts_total", "Operator alerts raised", ["reason"], registry=r)
        self.profile_reads = Counter("cookiesync_profile_reads_total",
                                     "LinkedIn profile reads after a connect, by outcome (read | failed)",
                                     ["outcome"], registry=r)
        self.webhooks = Counter("cookiesync_webhooks_total", "Unipile webhooks received", ["source", "message"],
                                registry=r)
        # reconciliation (domain/reconcile): this instance's passes, and the statuses they found that
        # no webhook brought, by the webhook message they were handled as (a fixed set)
        self.reconcile_passes = Counter("cookiesync_reconcile_passes_total",
                                        "Reconciliation passes by outcome (complete | failed | valve)", ["outcome"],
                                        registry=r)
        self.reconcile_drifts = Counter("cookiesync_reconcile_drifts_total",
                                        "Account statuses the reconciliation found that no webhook brought, by the "
                                        "webhook message they were handled as", ["message"], registry=r)
        self.emails = Counter("cookiesync_emails_total", "Emails by what happened", ["status"], registry=r)
        self.sweep_seconds = Histogram("cookiesync_sweep_seconds", "Sweep duration", registry=r)
        self.sweep_lag = Gauge("cookiesync_sweep_lag_seconds", "Age of the oldest due attempt at sweep time",
                               registry=r)
        self.sweep_leader = Gauge("cookiesync_sweep_leader", "1 while this instance leads the sweep", registry=r)
        self.link_states = Gauge("cookiesync_links", "Links by state", ["state"], registry=r)
        self.open_incidents = Gauge("cookiesync_open_incidents", "Incidents open now", registry=r)
        # retention (domain/retention): the counters are this instance's prunes, the gauges the last
        # prune of any instance and the table sizes, read from the database at each scrape
        self.prune_runs = Counter("cookiesync_prune_runs_total", "Prunes this instance ran to the end", registry=r)
        self.prune_removed = Counter("cookiesync_prune_removed_total",
                                     "Rows this instance's prunes removed (outbox: bodies blanked)", ["table"],
                                     registry=r)
        self.prune_last_run = Gauge("cookiesync_prune_last_run_timestamp_seconds",
                                    "When the last prune (of any instance) finished", registry=r)
        self.prune_last_duration = Gauge("cookiesync_prune_last_duration_seconds", "How long the last prune took",
                                         registry=r)
        self.prune_last_removed = Gauge("cookiesync_prune_last_removed", "Rows the last prune removed, by table",
                                        ["table"], registry=r)
        self.table_rows = Gauge("cookiesync_table_rows", "Rows per table (PostgreSQL: the planner's estimate)",
                                ["table"], registry=r)
        self.table_bytes = Gauge("cookiesync_table_bytes", "Bytes per table with its indexes (PostgreSQL)",
                                 ["table"], registry=r)

    def unipile_call(self, endpoint: str, status: int | None, seconds: float) -> None:
        self.unipile_calls.labels(endpoint, str(status) if status else "none").observe(seconds)


def metrics_access(mode: str, token: str, authorization: str) -> int | None:
    """Who may read `/metrics`: None to serve it, else the status to answer.

    With `metrics_token` set, only `Authorization: Bearer <token>` reads it (compared in constant
    time), else 401. Without one, production answers 404: the figures (links by state, sweep
    leadership, Unipile latencies) are for the operator's Prometheus, not for the internet, and
    production should not serve them until a token is configured. Local mode serves them to anyone
    who reaches the port: it listens on loopback by default and has no operator to hand a token to
    (`make run` prints no metrics secret), like its other local conveniences."""
    if not token:
        return 404 if mode == "production" else None
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return 401
    return None
