"""Template rendering speed: linkloom.flows.templates.render vs a bare Jinja2 sandbox.

The baseline renders the same templates with a plain ``SandboxedEnvironment`` (templates
compiled once, no budget, no type preservation). Prints µs per render and the ratio.

    .venv/bin/python bench/bench_templates.py
"""

from __future__ import annotations

import timeit

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from linkloom.flows import templates

CONTEXT = {
    "inputs": {"name": "Ann", "limit": 10},
    "steps": {
        "fetch": {
            "status": "SUCCEEDED",
            "output": {"orders": [{"id": i, "total": i * 3.5} for i in range(200)]},
            "outputs": {"count": 200},
        }
    },
    "run": {"id": "r-1", "flow": "f", "version": 3},
}

CASES = {
    "whole lookup": "{{ steps.fetch.output.orders }}",
    "text lookups": "Hello {{ inputs.name }}, run {{ run.id }} v{{ run.version }}",
    "filter chain": "{{ steps.fetch.output.orders | selectattr('total', 'gt', 300) "
    "| map(attribute='id') | list }}",
    "loop": "{% for o in steps.fetch.output.orders[:20] %}{{ o.id }}={{ o.total }};{% endfor %}",
}


def main() -> None:
    env = SandboxedEnvironment(undefined=StrictUndefined)
    print(f"{'case':<14}{'linkloom µs':>14}{'jinja µs':>12}{'ratio':>8}")
    for name, text in CASES.items():
        compiled = env.from_string(text)
        n = 3000
        ours = timeit.timeit(lambda t=text: templates.render(t, CONTEXT), number=n) / n * 1e6
        base = timeit.timeit(lambda c=compiled: c.render(CONTEXT), number=n) / n * 1e6
        print(f"{name:<14}{ours:>14.1f}{base:>12.1f}{ours / base:>8.2f}")


if __name__ == "__main__":
    main()
