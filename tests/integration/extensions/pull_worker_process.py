"""A real pull-mode worker process for the tests: ``python pull_worker_process.py URL TOKEN DIR``.

Handler ``square``: notes ``<dir>/started-<key>-<pid>``, sleeps ``payload.sleep`` seconds,
notes ``<dir>/done-<key>-<pid>`` and returns ``{"square": n*n, "pid": pid}``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from linkloom.sdk import Job, Worker


def main() -> None:
    url, token, marks = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    concurrency = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    worker = Worker(
        url, token=token, queues=["proof"], concurrency=concurrency, poll_wait=2.0,
        worker_id=f"proof-{os.getpid()}",
    )  # fmt: skip

    @worker.task("square")
    async def square(job: Job) -> dict[str, int]:
        key = job.idempotency_key.replace(":", "_")
        (marks / f"started-{key}-{os.getpid()}").write_text(str(job.deliveries))
        await asyncio.sleep(float(job.payload["sleep"]))
        n = int(job.payload["n"])
        (marks / f"done-{key}-{os.getpid()}").write_text("")
        job.log(f"squared {n}")
        return {"square": n * n, "pid": os.getpid()}

    worker.run_forever()


if __name__ == "__main__":
    main()
