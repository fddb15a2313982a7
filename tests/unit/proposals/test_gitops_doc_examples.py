"""The fixture case, stubs file, policy file and CODEOWNERS examples in docs/gitops.md parse, and
mean what the text around them says."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import httpx

from linkloom.proposals import policy
from linkloom.proposals.models import CheckStatus
from linkloom.sandbox import fixtures, stubs

DOC = Path(__file__).resolve().parents[3] / "docs" / "gitops.md"


def block(tag: str) -> str:
    """The body of the fenced block whose info string is ``tag`` (dedented)."""
    found = re.findall(rf"^( *)```{re.escape(tag)}\n(.*?)^\1```", DOC.read_text(), re.M | re.S)
    assert len(found) == 1, f"exactly one ```{tag} block expected in {DOC}"
    return textwrap.dedent(found[0][1])


def test_the_documented_case_parses_with_its_get_recorded_without_a_body() -> None:
    case = fixtures.loads(block("yaml fixture-case"))
    assert case.version == 3
    rates, fetch = case.exchanges
    assert rates.method == "GET"
    assert rates.url.endswith("/rates?region=eu&currency=EUR")
    assert rates.request_body is None
    assert fetch.request_headers == {"content-type": "application/json"}
    assert case.expected["rates"].output == {"rate": 1.2}


def test_the_documented_stub_answers_with_its_templates_rendered() -> None:
    (audit,) = stubs.loads(block("yaml stubs"))
    url = "http://127.0.0.1:8081/api/tasks/audit?region=eu"
    assert audit.matches("POST", url)
    request = httpx.Request("POST", url, json={"inputs": {"day": "2026-11-21"}})
    answer = audit.answer(request, body={"inputs": {"day": "2026-11-21"}})
    assert answer.json() == {
        "status": "SUCCESS",
        "output": {"audited": "2026-11-21", "region": "eu"},
    }


def test_the_documented_policy_and_codeowners_parse() -> None:
    found = policy.parse(block("yaml policy"), where="docs/gitops.md")
    assert found.required_approvals == 2
    assert found.owners == ("alice", "bob")
    assert found.block_on == {CheckStatus.FAILED, CheckStatus.ATTENTION}
    owners = block("codeowners")
    assert policy.owners_of(owners, "flows/billing-eu/flow.yaml") == ("alice", "bob")
    assert policy.owners_of(owners, "flows/daily-report/flow.yaml") == ("platform",)
