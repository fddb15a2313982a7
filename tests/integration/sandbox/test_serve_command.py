"""``loom sandbox serve`` as a user starts it: on a port clear of everything else Link Loom starts
by default, with a one-line error when that port is taken, and only with a bundle key long
enough to authenticate code it will run (32 bytes), checked when the settings load."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from linkloom.cli.server import EXAMPLE_BACKEND_PORT
from linkloom.config import MIN_KEY_BYTES, ServerSettings, SettingsInvalid, load_settings
from linkloom.errors import InvalidInput, Unavailable
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


def test_a_short_key_is_refused_before_the_service_starts(tmp_path: Path) -> None:
    short = "k3y-5"
    refused = serve(tmp_path, "--port", "0", key=short)
    assert refused.returncode == InvalidInput.exit_code == 2
    assert refused.stdout == ""
    assert refused.stderr.startswith("error: Invalid settings: LOOM_SANDBOX__REMOTE_KEY: 5 bytes")
    assert f"at least {MIN_KEY_BYTES}" in refused.stderr
    assert short not in refused.stderr  # the key itself is never shown
    assert refused.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "key",
    ["x" * (MIN_KEY_BYTES - 1), "é" * 15 + "x"],  # 31 bytes each; é is 2 bytes
)
def test_the_server_refuses_a_remote_key_under_32_bytes(key: str) -> None:
    too_short = r"LOOM_SANDBOX__REMOTE_KEY: 31 bytes is too short"
    with pytest.raises(SettingsInvalid, match=too_short) as err:
        load_settings(sandbox={"backend": "remote", "remote_key": key})
    assert key not in str(err.value)


@pytest.mark.parametrize("key", ["", "x" * MIN_KEY_BYTES, "é" * 16])
def test_an_unset_or_32_byte_remote_key_loads(key: str) -> None:
    settings = load_settings(sandbox={"remote_key": key})
    assert settings.sandbox.remote_key.get_secret_value() == key
