"""The example pull-mode worker (``linkloom.sdk.Worker``): ``python -m examples.backend.worker``.

For backends the server cannot reach: it polls the server for ``type: task`` steps. Settings
come from the environment: ``LOOM_SERVER_URL`` (default http://127.0.0.1:8080), ``LOOM_TOKEN``
(a token with the ``author`` role), ``LOOM_WORKER_QUEUES`` (comma-separated, default
``reports``), ``LOOM_WORKER_ID`` (default: host name and a random suffix) and
``LOOM_WORKER_CONCURRENCY`` (default 4).

Tasks:

* ``square``: payload ``{"n": 3, "seconds": 1}``; prints ``task started key=<idempotency key>
  deliveries=<n>``, works ``seconds``, answers ``{"square": n*n, "deliveries", "worker"}``.
* ``fetch-data``, ``process``, ``send-email``: the daily-report steps, run by a worker.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from linkloom.sdk import Job, Worker


def build_worker() -> Worker:
    queues = os.environ.get("LOOM_WORKER_QUEUES", "reports").split(",")
    worker = Worker(
        os.environ.get("LOOM_SERVER_URL", "http://127.0.0.1:8080"),
        token=os.environ.get("LOOM_TOKEN"),
        queues=[q.strip() for q in queues if q.strip()],
        worker_id=os.environ.get("LOOM_WORKER_ID") or None,
        concurrency=int(os.environ.get("LOOM_WORKER_CONCURRENCY", "4")),
        poll_wait=2.0,
    )

    @worker.task("square")
    async def square(job: Job) -> dict[str, Any]:
        print(f"task started key={job.idempotency_key} deliveries={job.deliveries}", flush=True)
        payload = job.payload if isinstance(job.payload, dict) else {}
        await asyncio.sleep(float(payload.get("seconds", 0)))
        n = int(payload.get("n", 0))
        job.log(f"squared {n}")
        return {"square": n * n, "deliveries": job.deliveries, "worker": worker.worker_id}

    @worker.task("fetch-data")
    def fetch_data(job: Job) -> dict[str, Any]:
        count = int(job.inputs.get("count", 20))
        records = [{"id": i, "value": i * 10, "valid": i % 20 != 0} for i in range(count)]
        job.log(f"Fetched {count} records")
        return {"records": records, "count": count}

    @worker.task("process")
    def process(job: Job) -> dict[str, Any]:
        records = (job.upstream.get("fetch_data") or {}).get("output", {}).get("records", [])
        valid = sum(1 for record in records if record.get("valid", True))
        job.log(f"Processed data, {valid} valid")
        return {"total": len(records), "valid": valid, "invalid": len(records) - valid}

    @worker.task("send-email")
    def send_email(job: Job) -> dict[str, Any]:
        to = str(job.inputs.get("to", "admin@example.com"))
        job.log(f"Email sent to {to}")
        return {"sent": True, "to": to}

    return worker


if __name__ == "__main__":
    build_worker().run_forever()
