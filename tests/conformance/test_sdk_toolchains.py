"""Each SDK's own tests, run by its own toolchain: ``npm test`` and ``npm pack`` (TypeScript),
``go vet`` and ``go test`` (Go), the javac/java test script (Java). Without the toolchain they
skip loudly; in CI they must run (``scripts/provision-sdks`` installs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

from tests.conformance.languages import GO_ENV, JAVA_SDK, REPO, TS_SDK, _run
from tests.support.real import require


def _needs(*tools: str, hint: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    require(not missing, f"needs {', '.join(missing)}: {hint}")


def _node_modules() -> None:
    _needs("node", "npm", hint="install Node.js 20 and npm")
    require(
        (TS_SDK / "node_modules").is_dir(),
        "sdks/typescript/node_modules is missing: run scripts/provision-sdks",
    )


def test_typescript_sdk_passes_its_own_tests_in_strict_mode() -> None:
    _node_modules()
    _run(["npm", "test", "--silent"], TS_SDK)


def test_typescript_sdk_packs_into_an_installable_esm_package_with_types(tmp_path: Path) -> None:
    """``npm pack`` builds the package; installed into a fresh project from the tarball alone
    (no registry), it imports as ESM and carries its type declarations."""
    _node_modules()
    _run(["npm", "pack", "--silent", "--pack-destination", str(tmp_path)], TS_SDK)
    (tarball,) = tmp_path.glob("linkloom-sdk-*.tgz")
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert {"package/dist/index.js", "package/dist/index.d.ts", "package/package.json"} <= names
    assert not [n for n in names if n.startswith(("package/src/", "package/test/"))]
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "app", "type": "module"}))
    _run(["npm", "install", "--offline", "--no-audit", "--no-fund", str(tarball)], app)
    probe = (
        "import * as sdk from '@linkloom/sdk';"
        "const h = sdk.sign('example-key', '{\"a\":1}', 1700000000);"
        "console.log(JSON.stringify({names: Object.keys(sdk).sort(), sig: h['X-Loom-Signature']}));"
    )
    done = subprocess.run(
        ["node", "--input-type=module", "-e", probe], cwd=app, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert {"TaskRouter", "Worker", "Client", "verify", "InMemoryIdempotencyStore"} <= set(
        seen["names"]
    )
    assert seen["sig"] == "v1=25e079f0ade4766fd01176738fe281c3bc05c399d51f7ee8865b86d293159742"


def test_go_sdk_vets_and_passes_its_tests_with_the_standard_library_only() -> None:
    _needs("go", hint="apt-get install golang-go")
    sdk = REPO / "sdks" / "go"
    assert "require" not in (sdk / "go.mod").read_text()  # no third-party modules
    _run(["go", "vet", "./..."], sdk, env=GO_ENV)
    _run(["go", "test", "./..."], sdk, env=GO_ENV)
    _run(["go", "vet", "./..."], REPO / "examples" / "backends" / "go", env=GO_ENV)


def test_java_sdk_builds_and_passes_its_tests_with_the_jdk_only() -> None:
    _needs("java", "javac", hint="install a JDK 17 (apt-get install openjdk-17-jdk-headless)")
    done = subprocess.run(
        ["bash", str(JAVA_SDK / "build.sh"), "test"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert done.stdout.strip().splitlines()[-1].endswith(" passed, 0 failed"), done.stdout
    pom = (JAVA_SDK / "pom.xml").read_text()
    assert "<dependencies>" not in pom  # the JDK only, for Maven users too
    assert "<maven.compiler.release>17</maven.compiler.release>" in pom
