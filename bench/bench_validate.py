"""Benchmark: validate 1,000 generated 50-step specs, against parsing the same files.

    .venv/bin/python bench/bench_validate.py [--specs 1000] [--steps 50] [--repeat 3]

Each spec mixes http, transform, condition and merge steps with random dependencies on
earlier steps and templates that read inputs and upstream outputs (a third of them unique per
spec, so the template cache cannot hide the parsing cost). Prints, as medians over the
repeats: the time to ``check_flow`` every spec, specs per second, and the ratio to a baseline
measured in the same run on the same text: PyYAML's ``yaml.load`` with the C loader (parsing
only); ``--python-baseline`` adds the pure-Python ``SafeLoader`` (what many tools use).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import yaml

from linkloom.flows import references
from linkloom.flows.loading import check_flow


def make_spec(n: int, steps: int, rng: random.Random) -> str:
    lines = [
        f"id: bench-{n}",
        f"name: Benchmark flow {n}",
        "inputs:",
        "  region: {type: string, default: eu}",
        "  limit: {type: integer, default: 10}",
        "schedules:",
        f"  - cron: '{n % 60} {n % 24} * * *'",
        "    timezone: Europe/Kyiv",
        "steps:",
    ]
    for i in range(steps):
        deps = sorted(rng.sample(range(i), k=min(i, rng.randint(1, 3)))) if i else []
        dep_ids = [f"s{d}" for d in deps]
        lines.append(f"  - id: s{i}")
        if dep_ids:
            lines.append(f"    depends_on: [{', '.join(dep_ids)}]")
        kind = "http" if i % 5 else "transform"
        if kind == "http":
            lines += [
                "    type: http",
                f"    url: http://127.0.0.1:8081/api/{{{{ inputs.region }}}}/spec{n}/step{i}",
                "    timeout: 30s",
                "    retry: {max_attempts: 3, backoff: exponential, initial_delay: 1s}",
                "    outputs:",
                "      total: '{{ output.total }}'",
            ]
            if dep_ids:
                source = dep_ids[-1]
                lines += [
                    "    body:",
                    f"      previous: '{{{{ steps.{source}.outputs.total }}}}'",
                    f"      limit: '{{{{ inputs.limit * {n % 7 + 1} }}}}'",
                    f"      label: 'spec {n} step {i} {{{{ steps.{source}.output | tojson }}}}'",
                ]
        else:
            lines += [
                "    type: transform",
                "    template:",
                f"      sum: '{{{{ (steps.{dep_ids[0]}.output.total | default(0)) + {n} }}}}'"
                if dep_ids
                else "      sum: 0",
                "    outputs:",
                "      total: '{{ output.sum }}'",
            ]
    return "\n".join(lines) + "\n"


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--python-baseline", action="store_true", help="also time the (slow) pure-Python loader"
    )
    args = parser.parse_args()
    rng = random.Random(42)
    texts = [make_spec(n, args.steps, rng) for n in range(args.specs)]
    size = sum(len(t) for t in texts)
    print(f"{args.specs} specs x {args.steps} steps, {size / 1e6:.1f} MB of YAML")

    def validate() -> None:
        references.fast_references.cache_clear()
        references.jinja_references.cache_clear()
        for n, text in enumerate(texts):
            result = check_flow(text, filename=f"bench-{n}.yaml")
            if not result.ok:
                raise SystemExit(f"generated spec {n} is invalid: {result.errors[:3]}")

    def parse_c() -> None:
        for text in texts:
            yaml.load(text, Loader=yaml.CSafeLoader)

    def parse_py() -> None:
        for text in texts:
            yaml.load(text, Loader=yaml.SafeLoader)

    ours = median_time(validate, args.repeat)
    c_base = median_time(parse_c, args.repeat)
    print(
        f"check_flow (parse + normalise + schema + semantics): {ours:7.2f} s "
        f"({args.specs / ours:,.0f} specs/s)"
    )
    print(
        f"baseline yaml.load CSafeLoader (parse only):       {c_base:7.2f} s "
        f"-> ratio {ours / c_base:.1f}x"
    )
    if args.python_baseline:
        py_base = median_time(parse_py, args.repeat)
        print(
            f"baseline yaml.load SafeLoader (parse only):        {py_base:7.2f} s "
            f"-> ratio {ours / py_base:.2f}x"
        )


if __name__ == "__main__":
    main()
