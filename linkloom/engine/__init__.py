"""Durable execution of flow runs: planner, transitions, worker, run service, executors.

Key contracts:
- A run's state changes only through ``RunStore.update_run`` with a pure transition
  (``transitions``): a step's result, its downstream readiness, dead letters and the run's end
  are written in ONE transaction. ``dag`` (the planner) is pure and decides readiness/skips.
- Workers claim QUEUED steps under a lease; an expired lease is re-queued with the same
  idempotency key (``<run>:<step>[:<index>]``), so delivery is at-least-once, effect once.
- Executors never raise: failures are ``StepError`` data; retries are durable (``ready_at``).
- Everything persisted is scrubbed of secret values and credential headers (``redaction``).
- Entry points: ``service.RunService`` (use cases), ``worker.Worker`` (``start``/``stop``/
  ``run_until_idle``), ``memory.InMemoryRunStore`` for tests and the sandbox.
"""

from __future__ import annotations
