"""The notification services of the services: rules and channels (``NotificationService``) and
the web app's personal notifications with Web Push (``PersonalNotifier``). ``build_services``
builds both when ``notifications.enabled``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from linkloom.engine.transport import make_client
from linkloom.notifications import channels
from linkloom.notifications.personal import PersonalNotifier
from linkloom.notifications.rules import ProposalFacts
from linkloom.notifications.service import NotificationService
from linkloom.store.notifications import SqlNotificationStore
from linkloom.store.session import Database
from linkloom.store.webpush import LazySender, SqlWebPushStore

if TYPE_CHECKING:
    from linkloom.wiring import Services


def build_notifications(services: Services, *, senders: Any = None) -> NotificationService:
    """The ``NotificationService`` over the services' database, run service and settings."""
    settings = services.settings
    options = settings.notifications
    # The engine's client for its other steps: httpx's API over aiohttp, no redirects followed,
    # and no cookies kept (a receiver's Set-Cookie must not ride along on later deliveries).
    # Each send passes the channel timeout.
    http = make_client(concurrency=16)
    store = SqlNotificationStore(services.db, keys=settings.verification_keys)
    return NotificationService(
        store=store,
        runs=services.runs,
        senders=senders
        or channels.Senders(
            http=http,
            signing_key=settings.security.signing_key.get_secret_value(),
            timeout=options.timeout_seconds,
        ),
        clock=services.runs.clock,
        public_url=settings.public_url,
        proposals=proposal_reader(services.db),
        max_attempts=options.max_attempts,
        retry_base=options.retry_base_seconds,
        retry_cap=options.retry_max_seconds,
        poll_interval=options.poll_interval,
        sla_interval=options.sla_check_seconds,
    )


def build_personal(services: Services) -> PersonalNotifier:
    """The personal notifier of the web app, on the services' database."""
    settings = services.settings
    store = SqlWebPushStore(services.db, keys=settings.verification_keys)
    clock = services.runs.clock
    return PersonalNotifier(
        store=store,
        runs=services.runs,
        clock=clock,
        sender=LazySender(store, subject=settings.notifications.web_push_subject, clock=clock),
        proposals=proposal_reader(services.db),
    )


def proposal_reader(db: Database) -> Callable[[str], Awaitable[ProposalFacts | None]]:
    """What the notification rules read of a proposal, from the proposal store."""
    stores: list[Any] = []

    async def read(proposal_id: str) -> ProposalFacts | None:
        if not stores:  # imported on first use: the proposals package is slow to import
            from linkloom.store.proposals import SqlProposalStore

            stores.append(SqlProposalStore(db))
        found = await stores[0].get(proposal_id)
        if found is None:
            return None
        return ProposalFacts(
            id=found.id,
            title=found.title,
            status=found.status.value,
            revision=found.revision,
            flows=tuple(found.flows),
            author=found.author,
        )

    return read
