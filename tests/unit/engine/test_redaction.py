"""Redaction of headers and secret values before anything persists."""

from __future__ import annotations

from linkloom.engine.redaction import MASK, redact_headers, scrub


def test_sensitive_headers_are_masked_and_others_kept() -> None:
    headers = {
        "Authorization": "Bearer abc",
        "Cookie": "s=1",
        "X-Loom-Signature": "v1=dead",
        "X-Api-Key": "k",
        "X-Auth-Token": "t",
        "Idempotency-Key": "run:step",
        "Content-Type": "application/json",
    }
    out = redact_headers(headers)
    assert out["Authorization"] == MASK
    assert out["Cookie"] == MASK
    assert out["X-Loom-Signature"] == MASK
    assert out["X-Api-Key"] == MASK
    assert out["X-Auth-Token"] == MASK
    assert out["Idempotency-Key"] == "run:step"
    assert out["Content-Type"] == "application/json"


def test_secret_values_are_scrubbed_everywhere() -> None:
    value = {
        "url": "https://api/x?key=s3cr3t-value",
        "nested": [{"note": "token s3cr3t-value here"}, 5, None],
        "s3cr3t-value": "as a key too",
    }
    out = scrub(value, ["s3cr3t-value"])
    assert "s3cr3t-value" not in repr(out)
    assert out["url"] == f"https://api/x?key={MASK}"
    assert out["nested"][1] == 5


def test_secret_in_an_innocent_header_value_is_scrubbed() -> None:
    out = redact_headers({"X-Custom": "value-s3cr3t"}, ["s3cr3t"])
    assert out["X-Custom"] == f"value-{MASK}"


def test_short_secrets_are_not_used_for_scrubbing() -> None:
    assert scrub("a b c", ["a"]) == "a b c"


# ------------------------------------------------------------------ values derived from secrets


def test_whatever_a_template_makes_of_a_secret_is_masked_whole() -> None:
    from linkloom.engine.ports import _SecretsView
    from linkloom.flows import templates
    from tests.support.step_context import Secrets

    context = {"secrets": _SecretsView(Secrets({"Token": "tok-3f9a2c"})), "inputs": {"n": 2}}
    rendered = templates.render(
        {
            "upper": "{{ secrets.Token | upper }}",
            "reverse": "{{ secrets.Token | reverse }}",
            "joined": "{{ secrets.Token | join('.') }}",
            "slice": "{{ secrets.Token[2:5] }}",
            "length": "{{ secrets.Token | length }}",
            "prefixed": "id-{{ secrets.Token | upper }}-x",
            "listed": "{{ [secrets.Token, 'plain'] }}",
            "plain": "n={{ inputs.n }}",
            "number": "{{ inputs.n }}",
        },
        context,
    )
    assert rendered["upper"] == "TOK-3F9A2C"  # the real value is used …
    stored = scrub(rendered, ["tok-3f9a2c"])  # … and stored masked, with no value to match
    assert stored == {
        "upper": MASK,
        "reverse": MASK,
        "joined": MASK,
        "slice": MASK,
        "length": MASK,
        "prefixed": MASK,
        "listed": [MASK, MASK],
        "plain": "n=2",
        "number": 2,
    }
    assert scrub(rendered, []) == stored  # no secret values known: the marks still mask
    assert redact_headers({"X-Id": rendered["prefixed"], "Accept": "a/b"}) == {
        "X-Id": MASK,
        "Accept": "a/b",
    }


def test_identifiers_are_never_scrubbed_as_credentials() -> None:
    from linkloom.sandbox.scrub import Scrubber

    data = {"idempotency_key": "run-1:fetch", "token_id": "t-9", "api_key": "k", "keyIds": [1]}
    assert Scrubber().data(data) == {
        "idempotency_key": "run-1:fetch",
        "token_id": "t-9",
        "api_key": "***",
        "keyIds": [1],
    }
