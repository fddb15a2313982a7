"""Cost of observability on the engine's hot path: one metric update and one log line per step.

    .venv/bin/python bench/bench_observability.py

Prints the median cost per call of
  * ``metrics.step_finished`` against the raw prometheus-client call it wraps (baseline), and
  * one JSON log line through ``logs.configure``'s pipeline (contextvars, masking, stdlib
    handler) against ``json.dumps`` + write of the same event (baseline),
each as a ratio to its baseline, measured in the same run. Output goes to /dev/null.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable

import structlog

from linkloom import logs, metrics

ROUNDS = 7


def per_call_us(fn: Callable[[], None], n: int) -> float:
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def main() -> None:
    histogram = metrics.step_attempt_duration
    helper = per_call_us(
        lambda: metrics.step_finished(step_type="http", status="SUCCEEDED", seconds=0.012), 100_000
    )
    raw = per_call_us(
        lambda: histogram.labels(step_type="http", status="succeeded").observe(0.012), 100_000
    )
    print(
        f"metrics.step_finished  {helper:7.2f} us/call   raw prometheus {raw:7.2f} us/call"
        f"   ratio {helper / raw:.2f}"
    )

    devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the whole run
    logs.register_secret("a-registered-secret-value")
    logs.configure(fmt="json", stream=devnull)
    log = structlog.get_logger("bench")
    event = {"step_id": "fetch", "status": "succeeded", "duration_ms": 12.5}

    def structured() -> None:
        with logs.bound(run_id="r_123", flow_id="daily", attempt=1):
            log.info("step_finished", **event)

    def baseline() -> None:
        devnull.write(json.dumps({"event": "step_finished", "run_id": "r_123", **event}) + "\n")

    ours = per_call_us(structured, 20_000)
    base = per_call_us(baseline, 20_000)
    print(
        f"log line (json)        {ours:7.2f} us/line   json.dumps+write {base:7.2f} us/line"
        f"   ratio {ours / base:.2f}"
    )
    skipped = per_call_us(lambda: log.debug("step_detail", **event), 100_000)
    print(f"filtered debug line    {skipped:7.2f} us/line")


if __name__ == "__main__":
    main()
