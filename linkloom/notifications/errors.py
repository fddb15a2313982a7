"""Notification errors.

LinkloomError
├── NotFound
│   ├── ChannelNotFound     no such channel
│   ├── RuleNotFound        no such rule
│   └── DeliveryNotFound    no such delivery
├── InvalidInput
│   └── ChannelInvalid      a channel's configuration cannot be used
└── Unavailable
    └── DeliveryFailed      a channel could not be reached (test sends)
"""

from __future__ import annotations

from linkloom.errors import InvalidInput, NotFound, Unavailable


class ChannelNotFound(NotFound):
    """Channel {channel!r} not found; list channels with 'loom notify channels'."""

    code = "channel_not_found"


class RuleNotFound(NotFound):
    """Rule {rule_id!r} not found; list rules with 'loom notify rules'."""

    code = "rule_not_found"


class DeliveryNotFound(NotFound):
    """Delivery {delivery_id!r} not found; list deliveries with 'loom notify deliveries'."""

    code = "delivery_not_found"


class ChannelInvalid(InvalidInput):
    """Channel {channel!r} is invalid: {problem}."""

    code = "channel_invalid"


class DeliveryFailed(Unavailable):
    """Channel {channel!r} could not be reached: {error}. Check its URL or SMTP settings."""

    code = "delivery_failed"
