"""Every SQL statement of the alert dispatcher. What a caller may see is decided here, in the
WHERE clause (`alerts_visible_to`, `feed_visible_to`, `reports_visible_to`), never by filtering
rows after the fact."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, RowMapping, and_, false, func, or_, select, text, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.adapters.auth import Caller
from services.adapters.tables import (
    alert_actions,
    alert_feed,
    alert_messages,
    alerts,
    dossiers,
    order_versions,
    orders,
    referrals,
    victim_report_events,
    victim_reports,
    webhook_deliveries,
    webhooks,
)

_FEED_LOCK = 0x6277_6665_6564  # "bwfeed": feed ids are taken and committed one writer at a time


# ---------------------------------------------------------------- scoping


def _scoped(
    caller: Caller,
    regional_role: str,
    region: ColumnElement[str],
    officer: ColumnElement[str],
    audience: ColumnElement[str] | None = None,
) -> ColumnElement[bool]:
    """Admins see all; the regional role (`operator` or `victim-support`) its own region
    (and, where rows have an audience, only those meant for everyone); probation officers the
    rows of their own cases; anyone else nothing."""
    if caller.role == "admin":
        return true()
    if caller.role == regional_role:
        own = region == (caller.region or "")
        return own if audience is None else and_(own, audience == "all")
    if caller.role == "probation":
        return officer == caller.sub
    return false()


def alerts_visible_to(caller: Caller) -> ColumnElement[bool]:
    """Operators: their region's alerts meant for the control room; probation officers: every
    alert of their own cases (battery warnings are for them only)."""
    c = alerts.c
    return _scoped(caller, "operator", c.region, c.probation_officer_id, c.audience)


def feed_visible_to(caller: Caller) -> ColumnElement[bool]:
    c = alert_feed.c
    return _scoped(caller, "operator", c.region, c.probation_officer_id, c.audience)


def reports_visible_to(caller: Caller) -> ColumnElement[bool]:
    c = victim_reports.c
    return _scoped(caller, "victim-support", c.region, c.probation_officer_id)


def referrals_visible_to(caller: Caller) -> ColumnElement[bool]:
    c = referrals.c
    return _scoped(caller, "victim-support", c.region, c.probation_officer_id)


def orders_for_reports(caller: Caller) -> ColumnElement[bool]:
    """The orders a caller may file a victim report against."""
    if caller.role == "admin":
        return true()
    if caller.role == "victim-support":
        return orders.c.region == (caller.region or "")
    return false()


# ---------------------------------------------------------------- intake of bw.alerts.v1


async def insert_messages(
    session: AsyncSession, messages: Sequence[dict[str, Any]]
) -> set[tuple[str, int]]:
    """Store messages not seen before; returns the (alert_id, seq) of those that were new."""
    if not messages:
        return set()
    result = await session.execute(
        insert(alert_messages)
        .values([{"alert_id": m["alert_id"], "seq": m["seq"], "payload": m} for m in messages])
        .on_conflict_do_nothing()
        .returning(alert_messages.c.alert_id, alert_messages.c.seq)
    )
    return {(row.alert_id, row.seq) for row in result}


async def alerts_for_update(
    session: AsyncSession, alert_ids: Iterable[str]
) -> dict[str, dict[str, Any]]:
    result = await session.execute(
        select(alerts).where(alerts.c.alert_id.in_(sorted(set(alert_ids)))).with_for_update()
    )
    return {row["alert_id"]: dict(row) for row in result.mappings()}


async def upsert_alert(session: AsyncSession, record: dict[str, Any]) -> None:
    values = {column.name: record[column.name] for column in alerts.c if column.name in record}
    await session.execute(
        insert(alerts).values(**values).on_conflict_do_update(
            index_elements=[alerts.c.alert_id],
            set_={k: v for k, v in values.items() if k != "alert_id"},
        )
    )  # fmt: skip


async def append_feed(session: AsyncSession, entries: Sequence[dict[str, Any]]) -> list[int]:
    """Append feed rows in the caller's transaction. The lock is held to commit, so a row with
    a higher id is never visible before one with a lower id: a reader that has seen id N can
    resume after N without missing a row committed later."""
    if not entries:
        return []
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FEED_LOCK})
    result = await session.execute(
        alert_feed.insert().values(list(entries)).returning(alert_feed.c.id)
    )
    return [row.id for row in result]


async def order_row(session: AsyncSession, order_id: str) -> RowMapping | None:
    result = await session.execute(select(orders).where(orders.c.order_id == order_id))
    return result.mappings().first()


async def webhooks_for(
    session: AsyncSession, officer_id: str, organisation: str | None
) -> Sequence[RowMapping]:
    owners = [and_(webhooks.c.owner_kind == "officer", webhooks.c.owner == officer_id)]
    if organisation:
        owners.append(
            and_(webhooks.c.owner_kind == "organisation", webhooks.c.owner == organisation)
        )
    result = await session.execute(
        select(webhooks).where(webhooks.c.active, or_(*owners)).order_by(webhooks.c.id)
    )
    return result.mappings().all()


async def add_deliveries(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(
            insert(webhook_deliveries).values(list(rows)).on_conflict_do_nothing()
        )


async def breach_times(
    session: AsyncSession, order_id: str, rules: Iterable[str]
) -> list[datetime]:
    result = await session.execute(
        select(alerts.c.breach_since).where(
            alerts.c.order_id == order_id, alerts.c.rule.in_(sorted(rules)),
            alerts.c.breach_since.is_not(None),
        )
    )  # fmt: skip
    return [row.breach_since for row in result]


async def open_referral(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Open a referral unless the order has one open; returns its id when it was opened."""
    result = await session.execute(
        insert(referrals).values(**values)
        .on_conflict_do_nothing(index_elements=[referrals.c.order_id],
                                index_where=text("status = 'open'"))
        .returning(referrals.c.id)
    )  # fmt: skip
    opened: int | None = result.scalar_one_or_none()
    return opened


# ---------------------------------------------------------------- reads and actions


async def feed_head(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.coalesce(func.max(alert_feed.c.id), 0))) or 0)


def _with_case_owner() -> Any:
    """Alerts with their order's case owner (who to call), when the order is known here."""
    return select(alerts, orders.c.body["case_owner"].label("case_owner")).select_from(
        alerts.outerjoin(orders, orders.c.order_id == alerts.c.order_id)
    )


async def list_alerts(
    session: AsyncSession, caller: Caller, filters: dict[str, Any], limit: int
) -> Sequence[RowMapping]:
    where = [alerts_visible_to(caller)]
    for name in ("region", "handling", "severity", "rule", "order_id", "episode_status"):
        if filters.get(name) is not None:
            where.append(alerts.c[name] == filters[name])
    result = await session.execute(
        _with_case_owner().where(*where).order_by(alerts.c.received_at.desc()).limit(limit)
    )
    return result.mappings().all()


async def get_alert(
    session: AsyncSession, caller: Caller, alert_id: str, *, for_update: bool = False
) -> dict[str, Any] | None:
    query = _with_case_owner().where(alerts.c.alert_id == alert_id, alerts_visible_to(caller))
    if for_update:
        query = query.with_for_update(of=alerts)
    row = (await session.execute(query)).mappings().first()
    return None if row is None else dict(row)


async def update_alert(session: AsyncSession, alert_id: str, values: dict[str, Any]) -> None:
    await session.execute(alerts.update().where(alerts.c.alert_id == alert_id).values(**values))


async def add_action(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(alert_actions.insert().values(**values))


async def actions_of(session: AsyncSession, alert_id: str) -> Sequence[RowMapping]:
    result = await session.execute(
        select(alert_actions).where(alert_actions.c.alert_id == alert_id)
        .order_by(alert_actions.c.id)
    )  # fmt: skip
    return result.mappings().all()


async def messages_of(session: AsyncSession, alert_id: str) -> Sequence[RowMapping]:
    result = await session.execute(
        select(alert_messages).where(alert_messages.c.alert_id == alert_id)
        .order_by(alert_messages.c.seq)
    )  # fmt: skip
    return result.mappings().all()


async def feed_after(
    session: AsyncSession,
    caller: Caller,
    after_id: int,
    *,
    region: str | None,
    supervisor: bool,
    limit: int = 500,
) -> Sequence[RowMapping]:
    where = [alert_feed.c.id > after_id, feed_visible_to(caller)]
    if region is not None:
        where.append(alert_feed.c.region == region)
    if supervisor:
        where.append(alert_feed.c.supervisor)
    result = await session.execute(
        select(alert_feed).where(*where).order_by(alert_feed.c.id).limit(limit)
    )
    return result.mappings().all()


async def due_for_escalation(
    session: AsyncSession, breach_before: datetime, limit: int = 200
) -> list[dict[str, Any]]:
    """Unacknowledged breaches, not yet escalated, whose breach began before `breach_before`
    (the shortest escalation time back); locked, skipping those another dispatcher holds."""
    result = await session.execute(
        select(alerts).where(
            alerts.c.handling == "new", alerts.c.escalated_at.is_(None),
            alerts.c.breach_since.is_not(None), alerts.c.breach_since <= breach_before,
        ).order_by(alerts.c.breach_since).limit(limit).with_for_update(skip_locked=True)
    )  # fmt: skip
    return [dict(row) for row in result.mappings()]


async def alerts_of_order_between(
    session: AsyncSession, order_id: str, rules: Iterable[str], start: datetime, end: datetime
) -> Sequence[RowMapping]:
    result = await session.execute(
        select(alerts).where(
            alerts.c.order_id == order_id, alerts.c.rule.in_(sorted(rules)),
            alerts.c.episode_started_at <= end,
            or_(alerts.c.closed_at.is_(None), alerts.c.closed_at >= start),
        ).order_by(alerts.c.episode_started_at)
    )  # fmt: skip
    return result.mappings().all()


# ---------------------------------------------------------------- webhooks


async def create_webhook(session: AsyncSession, values: dict[str, Any]) -> RowMapping:
    result = await session.execute(webhooks.insert().values(**values).returning(webhooks))
    row: RowMapping = result.mappings().one()
    return row


def webhooks_visible_to(caller: Caller) -> ColumnElement[bool]:
    if caller.role == "admin":
        return true()
    if caller.role == "probation":
        return and_(webhooks.c.owner_kind == "officer", webhooks.c.owner == caller.sub)
    return false()


async def list_webhooks(session: AsyncSession, caller: Caller) -> Sequence[RowMapping]:
    result = await session.execute(
        select(webhooks).where(webhooks_visible_to(caller)).order_by(webhooks.c.id)
    )
    return result.mappings().all()


async def claim_due_deliveries(
    session: AsyncSession, now: datetime, lease: timedelta, limit: int
) -> Sequence[RowMapping]:
    """Take up to `limit` due deliveries by pushing their next attempt past a lease: a sender
    that dies mid-attempt leaves them to be tried again when the lease runs out."""
    due = (
        select(webhook_deliveries.c.id)
        .where(
            webhook_deliveries.c.status == "pending", webhook_deliveries.c.next_attempt_at <= now
        )
        .order_by(webhook_deliveries.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claimed = (
        webhook_deliveries.update()
        .where(webhook_deliveries.c.id.in_(due.scalar_subquery()))
        .values(next_attempt_at=now + lease)
        .returning(webhook_deliveries)
        .cte("claimed")
    )
    result = await session.execute(
        select(claimed, webhooks.c.url, webhooks.c.secret).join(
            webhooks, webhooks.c.id == claimed.c.webhook_id
        )
    )
    return result.mappings().all()


async def finish_delivery(session: AsyncSession, delivery_id: int, values: dict[str, Any]) -> None:
    await session.execute(
        webhook_deliveries.update().where(webhook_deliveries.c.id == delivery_id).values(**values)
    )


async def dead_deliveries(session: AsyncSession, limit: int) -> Sequence[RowMapping]:
    shown = [column for column in webhook_deliveries.c if column.name != "payload"]
    result = await session.execute(
        select(*shown, webhooks.c.owner_kind, webhooks.c.owner, webhooks.c.url)
        .join(webhooks, webhooks.c.id == webhook_deliveries.c.webhook_id)
        .where(webhook_deliveries.c.status == "dead")
        .order_by(webhook_deliveries.c.id.desc()).limit(limit)
    )  # fmt: skip
    return result.mappings().all()


# ---------------------------------------------------------------- referrals and victim reports


async def list_referrals(session: AsyncSession, caller: Caller) -> Sequence[RowMapping]:
    result = await session.execute(
        select(referrals).where(referrals_visible_to(caller)).order_by(referrals.c.id.desc())
    )
    return result.mappings().all()


async def order_for_report(
    session: AsyncSession, caller: Caller | None, order_id: str
) -> RowMapping | None:
    """The order a report is filed against; `caller` None means a victim's own token, which
    names its order and nothing else."""
    where = [orders.c.order_id == order_id]
    if caller is not None:
        where.append(orders_for_reports(caller))
    result = await session.execute(select(orders).where(*where))
    return result.mappings().first()


async def create_report(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(victim_reports.insert().values(**values))


async def add_report_event(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(victim_report_events.insert().values(**values))


async def list_reports(
    session: AsyncSession, caller: Caller, order_id: str | None, limit: int
) -> Sequence[RowMapping]:
    where = [reports_visible_to(caller)]
    if order_id is not None:
        where.append(victim_reports.c.order_id == order_id)
    result = await session.execute(
        select(victim_reports).where(*where).order_by(victim_reports.c.created_at.desc())
        .limit(limit)
    )  # fmt: skip
    return result.mappings().all()


async def get_report(
    session: AsyncSession, caller: Caller, report_id: str, *, for_update: bool = False
) -> RowMapping | None:
    query = select(victim_reports).where(
        victim_reports.c.report_id == report_id, reports_visible_to(caller)
    )
    if for_update:
        query = query.with_for_update()
    return (await session.execute(query)).mappings().first()


async def report_by_token_hash(session: AsyncSession, token_hash: str) -> RowMapping | None:
    result = await session.execute(
        select(victim_reports).where(victim_reports.c.status_token_hash == token_hash)
    )
    return result.mappings().first()


async def set_report_status(session: AsyncSession, report_id: str, status: str) -> None:
    await session.execute(
        victim_reports.update().where(victim_reports.c.report_id == report_id)
        .values(status=status, updated_at=func.now())
    )  # fmt: skip


async def report_events(session: AsyncSession, report_id: str) -> Sequence[RowMapping]:
    result = await session.execute(
        select(victim_report_events).where(victim_report_events.c.report_id == report_id)
        .order_by(victim_report_events.c.id)
    )  # fmt: skip
    return result.mappings().all()


# ---------------------------------------------------------------- dossiers


async def version_in_force(session: AsyncSession, order_id: str, at: datetime) -> RowMapping | None:
    """The order version the evaluator held at `at`: the newest received by then (the first
    version when the alert somehow predates them all)."""
    newest_by = (
        select(order_versions).where(
            order_versions.c.order_id == order_id, order_versions.c.received_at <= at
        ).order_by(order_versions.c.version.desc()).limit(1)
    )  # fmt: skip
    row = (await session.execute(newest_by)).mappings().first()
    if row is not None:
        return row
    first = (
        select(order_versions).where(order_versions.c.order_id == order_id)
        .order_by(order_versions.c.version).limit(1)
    )  # fmt: skip
    return (await session.execute(first)).mappings().first()


async def frozen_dossier(session: AsyncSession, alert_id: str) -> RowMapping | None:
    result = await session.execute(select(dossiers).where(dossiers.c.alert_id == alert_id))
    return result.mappings().first()


async def freeze_dossier(
    session: AsyncSession, alert_id: str, content: dict[str, Any], digest: str
) -> None:
    await session.execute(
        insert(dossiers).values(alert_id=alert_id, content=content, content_hash=digest)
        .on_conflict_do_nothing()
    )  # fmt: skip
