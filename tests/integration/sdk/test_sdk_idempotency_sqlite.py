from __future__ import annotations

import threading
import time
from pathlib import Path

from linkloom.sdk import InMemoryIdempotencyStore, Reply, SqliteIdempotencyStore


def test_sqlite_store_keeps_replies_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "idem.db"
    store = SqliteIdempotencyStore(path)
    assert store.claim("k", ttl=60)
    store.put("k", Reply(status_code=200, body={"status": "SUCCESS", "output": [1]}))
    store.close()
    reopened = SqliteIdempotencyStore(path)
    assert reopened.get("k") == Reply(status_code=200, body={"status": "SUCCESS", "output": [1]})
    assert not reopened.claim("k", ttl=60)
    assert reopened.get("missing") is None


def test_sqlite_store_claims_once_across_connections(tmp_path: Path) -> None:
    stores = [SqliteIdempotencyStore(tmp_path / "idem.db") for _ in range(4)]
    results: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def claim(store: SqliteIdempotencyStore) -> None:
        barrier.wait()
        results.append(store.claim("same-key", ttl=60))

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]


def test_sqlite_store_lets_an_expired_claim_be_taken_over_and_released(tmp_path: Path) -> None:
    store = SqliteIdempotencyStore(tmp_path / "idem.db")
    assert store.claim("k", ttl=0.05)
    assert not store.claim("k", ttl=60)
    time.sleep(0.06)
    assert store.claim("k", ttl=60)  # the first holder died: take over
    store.release("k")
    assert store.claim("k", ttl=60)
    assert store.get("k") is None


def test_stores_forget_replies_after_retention(tmp_path: Path) -> None:
    for store in (
        InMemoryIdempotencyStore(retention=0.05),
        SqliteIdempotencyStore(tmp_path / "r.db", retention=0.05),
    ):
        store.put("k", Reply(status_code=200, body={}))
        time.sleep(0.06)
        assert store.get("k") is None
        assert store.claim("k", ttl=1)


def test_sqlite_store_takes_over_a_claim_of_a_dead_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "idem.db"
    code = (
        "from linkloom.sdk import SqliteIdempotencyStore;"
        f"assert SqliteIdempotencyStore({str(path)!r}).claim('k', ttl=3600)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # claims, then exits mid-"work"
    store = SqliteIdempotencyStore(path)
    assert store.claim("k", ttl=60)  # no hour-long wait for the dead claimant
    assert not store.claim("k", ttl=60)  # but a live claim (ours) still holds
