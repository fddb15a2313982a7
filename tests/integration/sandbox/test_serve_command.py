"""``loom sandbox serve`` as a user starts it: on a port clear of everything else Link Loom starts
by default, with a one-line error when that port is taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from linkloom.cli.server import EXAMPLE_BACKEND_PORT
from linkloom.config import ServerSettings
from linkloom.errors import Unavailable
from linkloom.sandbox import DEFAULT_SERVICE_PORT

LOOM = str(Path(sys.executable).with_name("loom"))
KEY = "sandbox-serve-test-key-of-at-least-32-bytes"


def serve(tmp_path: Path, *args: str, key: str = KEY) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "LOOM_HOME": str(tmp_path / "home"),
        "LOOM_SANDBOX__REMOTE_KEY": key,
    }
    return subprocess.run(
        [LOOM, "sandbox", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_default_port_is_neither_the_servers_nor_the_example_backends() -> None:
    assert ServerSettings().port != DEFAULT_SERVICE_PORT
    assert EXAMPLE_BACKEND_PORT != DEFAULT_SERVICE_PORT


def test_a_taken_port_is_one_line_naming_the_port_and_the_option(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = serve(tmp_path, "--port", str(port))
    assert refused.returncode == Unavailable.exit_code == 6
    assert refused.stdout == ""
    assert refused.stderr.startswith(f"error: Port {port} on 127.0.0.1 is already in use")
    assert "--port" in refused.stderr
    assert refused.stderr.count("\n") == 1  # one line, no traceback
    assert "Traceback" not in refused.stderr
