"""Notifications: tell people when runs fail or recover and when proposals need them.

    events (run finished, dead letter, SLA exceeded, proposal status)  ──▶ rules.py (pure)
    ──▶ messages.py (one line + a link to the web UI) ──▶ deliveries (durable, one per channel)
    ──▶ channels.py (signed webhook, Slack-compatible webhook, SMTP email), retried with backoff

Key contracts: ``NotificationService`` never blocks the engine (listeners only enqueue); a
delivery is unique per (channel, event key), so one event sends one message per channel; a
rule's quiet period holds back further messages of the same family for the same flow; channel
secrets leave the service only masked.
"""
