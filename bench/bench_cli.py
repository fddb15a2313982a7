"""Benchmark: how long ``loom`` takes to answer, beside ``python -c pass`` in the same run.

    .venv/bin/python bench/bench_cli.py [--repeat 15] [--loom PATH/bin/loom]

``--loom`` measures another install's ``loom`` (its own ``python -c pass`` is the baseline),
e.g. a base install (``pip install linkloom``, no server extra: what CI users and laptops run;
``scripts/test-install-profiles --keep DIR`` makes one). The server always runs from this venv.

A CLI is used dozens of times an hour, so its start-up is part of its interface. Each command
runs ``--repeat`` times as a fresh process (wall time, from spawn to exit); the figures are
medians and minima, and each is also shown as a multiple of the interpreter's own start-up
(``python -c pass``, the floor no Python CLI can go under) measured in the same minutes,
interleaved with the commands so machine load hits all of them alike.

* ``loom --help``: target under 0.3 s on a quiet machine.
* ``loom flow list`` against a running server (a real ``loom server`` on a free port with a
  temporary home, started by the bench, holding the example flows): target under 0.5 s.
* ``loom validate`` of one example spec, ``loom run list`` and ``import linkloom.cli.main``.
* ``loom token list --local``: the rescue command on the server's host, on an embedded SQLite
  database of its own (migrated by the warm-up run); it imports the storage, not the engine.

Targets are stated for a quiet machine; on a shared one read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flows" / "daily-report" / "flow.yaml"
TARGETS = {"loom --help": 0.3, "loom flow list": 0.5}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def loom_server(loom: Path, home: Path) -> Iterator[dict[str, str]]:
    """A real server with the example flows; yields the environment that points ``loom`` at it."""
    port = free_port()
    env = {
        **os.environ,
        "LOOM_HOME": str(home / "loom"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "LOOM_SERVER__PORT": str(port),
        "LOOM_LOG__LEVEL": "WARNING",
    }
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [loom, "demo", "--no-backend"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"loom demo exited {proc.returncode}; see {home / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("loom demo did not answer /healthz in 90 s") from None
                time.sleep(0.2)
        config = json.loads((home / "config" / "linkloom" / "cli.json").read_text())
        yield {"LOOM_SERVER_URL": url, "LOOM_TOKEN": config["token"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wall(cmd: Sequence[str | Path], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [str(c) for c in cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{done.stderr.decode()}")
    return elapsed


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--loom", type=Path, default=Path(sys.executable).parent / "loom")
    args = parser.parse_args(argv)
    loom: Path = args.loom
    python = loom.parent / "python"
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        home = Path(tmp)
        with loom_server(Path(sys.executable).parent / "loom", home) as server_env:
            env = {**os.environ, **server_env, "XDG_CONFIG_HOME": str(home / "client")}
            commands: dict[str, list[str | Path]] = {
                "python -c pass": [python, "-c", "pass"],
                "import linkloom.cli.main": [python, "-c", "import linkloom.cli.main"],
                "loom --help": [loom, "--help"],
                "loom validate (one spec)": [loom, "validate", EXAMPLE],
                "loom flow list": [loom, "flow", "list"],
                "loom run list": [loom, "run", "list"],
                "loom token list --local": [loom, "token", "list", "--local"],
            }
            envs = {"loom token list --local": {**env, "LOOM_HOME": str(home / "local")}}
            for name, cmd in commands.items():  # warm the file cache and the server
                wall(cmd, envs.get(name, env))
            times: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.repeat):
                for name, cmd in commands.items():
                    times[name].append(wall(cmd, envs.get(name, env)))
    floor = statistics.median(times["python -c pass"])
    load = os.getloadavg()[0]
    print(f"{loom}: start-up, {args.repeat} runs each, interleaved; load average {load:.1f}")
    print(f"{'command':<28}{'median':>9}{'min':>9}{'× python':>10}  target")
    for name, samples in times.items():
        median = statistics.median(samples)
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            verdict = f"< {target:.1f} s {'met' if median < target else 'MISSED'}"
        print(
            f"{name:<28}{median * 1000:>7.0f}ms{min(samples) * 1000:>7.0f}ms"
            f"{median / floor:>9.1f}×  {verdict}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
