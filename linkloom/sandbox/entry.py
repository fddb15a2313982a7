"""``python -m linkloom.sandbox.entry BUNDLE_DIR``: the program that runs inside the sandbox.

Reads ``BUNDLE_DIR/bundle.json``, runs every case in-process on the engine and writes the JSON
line protocol of ``sandbox/runner.py`` on stdout (flushed per line, so a sandbox killed half-way
still reports the cases it finished). Exit status 0 unless the bundle itself is unreadable (2).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from linkloom.sandbox.bundle import SandboxBundle
from linkloom.sandbox.errors import InvalidBundle
from linkloom.sandbox.inprocess import InProcessRunner
from linkloom.sandbox.runner import CaseResult, event_line


def _emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _on_case(name: str, result: CaseResult | None) -> None:
    if result is None:
        _emit(event_line("case_started", case=name))
    else:
        _emit(event_line("case", result=result.to_dict()))


def _logs_to_stderr() -> None:
    """Stdout carries results only: engine logs (structlog, logging) go to stderr, warnings up."""
    import logging

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, force=True)
    try:
        import structlog
    except ImportError:
        return
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )


async def _main(directory: Path) -> int:
    started = time.perf_counter()
    _logs_to_stderr()
    try:
        bundle = SandboxBundle.read(directory)
    except InvalidBundle as exc:
        _emit(event_line("fatal", error=exc.message))
        return 2
    result = await InProcessRunner(on_case=_on_case).run(bundle)
    if result.error:
        _emit(event_line("fatal", error=result.error))
    _emit(event_line("done", duration_ms=(time.perf_counter() - started) * 1000))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m linkloom.sandbox.entry BUNDLE_DIR\n")
        return 2
    return asyncio.run(_main(Path(args[0])))


if __name__ == "__main__":
    sys.exit(main())
