"""linkloom.scheduler: cron/interval schedules, backfills, signed webhooks and event triggers.

Contracts: a scheduled run carries ``(flow_id, schedule_id, fire_time)``, unique in the store,
so racing schedulers create it once; ``next_fire_time`` only advances (compare-and-set) after
the runs before it exist. One replica leads through ``LeaderLock`` but correctness never depends
on it. Only a flow's current version is scheduled. ``cron`` and ``policies`` are pure;
``service.Scheduler`` talks to storage through ``ports.SchedulerStore`` (``store.schedules``
implements it, ``memory`` is the in-memory double). See docs/scheduling.md.
"""

from __future__ import annotations
