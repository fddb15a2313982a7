"""docs/notifications.md documents exactly the real notification settings and event kinds."""

from __future__ import annotations

import re
from pathlib import Path

from linkloom.config import NotificationSettings
from linkloom.notifications.models import EventKind

DOC = (Path(__file__).parents[3] / "docs" / "notifications.md").read_text(encoding="utf-8")


def test_notification_docs_name_every_setting_and_only_real_ones() -> None:
    named = {m.lower() for m in re.findall(r"LOOM_NOTIFICATIONS__([A-Z_]+)", DOC)}
    assert named == set(NotificationSettings.model_fields)


def test_notification_docs_explain_every_rule_event() -> None:
    for kind in EventKind:
        if kind is not EventKind.TEST:
            assert f"| `{kind.value}` |" in DOC, kind
