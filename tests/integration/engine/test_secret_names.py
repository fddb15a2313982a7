"""A secret's name is what a template reads, case and all, and a spec that reads a secret the
server does not have is caught before it runs: an error where the server decides (apply,
proposals), a warning from ``loom validate --server`` or ``--secret``."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx

from tests.support.loom_server import LoomServer

SECRET = "t0k-en-value"


def spec(name: str) -> str:
    return (
        "id: secret-names\n"
        "steps:\n"
        "  - id: size\n"
        "    type: transform\n"
        f"    template: '{{{{ secrets.{name} | length }}}}'\n"
    )


async def loom(*args: str, server: LoomServer, cwd: Path) -> tuple[int, str]:
    env = {**os.environ, "LOOM_SERVER_URL": server.url, "LOOM_TOKEN": "unused"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "linkloom", *args,
        cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_the_server_refuses_a_spec_reading_a_secret_it_lacks_and_names_the_right_one(
    tmp_path: Path,
) -> None:
    async with LoomServer(tmp_path / "home", secrets={"MyToken": SECRET}) as server:
        async with httpx.AsyncClient(base_url=server.url + "/api/v1") as http:
            wrong = await http.put("/flows/secret-names", json={"spec": spec("mytoken")})
            assert wrong.status_code == 422, wrong.text
            (problem,) = wrong.json()["problems"]
            assert problem["code"] == "unknown-secret"
            assert problem["severity"] == "error"
            assert "did you mean 'MyToken'" in problem["hint"]
            # A local `loom validate` cannot see the server's secrets: the message names the
            # flow (not a file the caller never had) and the command that can.
            message = wrong.json()["detail"]
            assert "'secret-names' is invalid: 5:" in message, message
            assert "loom validate --server" in message, message

            right = await http.put("/flows/secret-names", json={"spec": spec("MyToken")})
            assert right.status_code in (200, 201), right.text
            names = await http.get("/secrets")
            assert names.json() == {"names": ["MyToken"]}
            assert SECRET not in names.text
        run = await server.services.runs.trigger("secret-names", inputs={})
        done = await server.wait(run.id)
        # A missing secret fails the template; the mixed-case name resolved to its value, and
        # what was derived from it is stored redacted.
        assert done.status.value == "SUCCEEDED", done
        assert (await server.steps(run.id))["size"].output == "***"


async def test_loom_validate_asks_the_server_for_its_secrets_names(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(spec("mytoken"))
    async with LoomServer(tmp_path / "home", secrets={"MyToken": SECRET}) as server:
        code, out = await loom("validate", "--server", "flow.yaml", server=server, cwd=tmp_path)
        assert code == 0, out  # a warning: the spec may be meant for another server
        assert "warning: secret 'mytoken' does not exist on the server" in out
        assert "secret names are case-sensitive: did you mean 'MyToken'?" in out
        code, out = await loom(
            "validate", "--server", "--strict", "flow.yaml", server=server, cwd=tmp_path
        )
        assert code == 1, out
    code, out = await loom("validate", "flow.yaml", server=server, cwd=tmp_path)
    assert code == 0, out
    assert "0 warning(s)" in out, out  # without --server or --secret nothing is assumed
