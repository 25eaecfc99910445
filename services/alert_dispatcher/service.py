"""The alert dispatcher's use cases: taking alerts in, what people do with them, escalation,
webhooks, referrals and victim reports. Every read of sensitive data and every change is
audited in the same transaction. No SQL here (repository.py) and no HTTP (api.py)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas import api, wire
from services.adapters import audit
from services.adapters.auth import Actor, Caller, VictimCaller
from services.adapters.database import transaction
from services.adapters.settings import DispatchSettings
from services.alert_dispatcher import policy
from services.alert_dispatcher import repository as repo
from services.alert_dispatcher.policy import Refused

Action = Literal["acknowledge", "assign", "resolve"]


class NotFound(Exception):
    """Absent, or not visible to the caller: the same answer either way (HTTP 404)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Intake:
    stored: int  # messages new to the store
    repeated: int  # messages seen before (redelivery), changed nothing


def alert_view(row: Any) -> api.AlertView:
    latest = row["latest"]
    return api.AlertView(
        **{name: row[name] for name in (
            "alert_id", "order_id", "rule", "zone_id", "protected_person_id", "region",
            "probation_officer_id", "risk_level", "audience", "severity", "certainty",
            "episode_status", "handling", "last_seq", "episode_started_at", "first_detected_at",
            "last_detected_at", "received_at", "closed_at", "assigned_to", "acknowledged_by",
            "acknowledged_at", "resolved_by", "resolved_at", "outcome", "notes", "escalated_at",
        )},
        late=bool(latest.get("late", False)),
        position=latest.get("position"),
        distance_m=latest.get("distance_m"),
        reason=latest.get("reason", ""),
        case_owner=row.get("case_owner"),
    )  # fmt: skip


def _json(value: Any) -> Any:
    return msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else value


class DispatchService:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: DispatchSettings
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.escalation = policy.EscalationPolicy(
            settings.escalate_after_s, settings.escalate_after_high_risk_s
        )
        self.referral = policy.ReferralPolicy(
            settings.referral_breaches, timedelta(days=settings.referral_window_days)
        )

    # ------------------------------------------------------------ intake of bw.alerts.v1

    async def take_in(self, messages: Sequence[wire.Alert], now: datetime) -> Intake:
        """Store a batch of alert messages in one transaction: each (alert_id, seq) once,
        its episode record, the feed, the webhook deliveries and any referral it opens."""
        async with transaction(self.sessions) as session:
            new = await repo.insert_messages(session, [msgspec.to_builtins(m) for m in messages])
            fresh = sorted(
                (m for m in messages if (m.alert_id, m.seq) in new),
                key=lambda m: (m.alert_id, m.seq),
            )
            # One message twice in a batch (a redelivered record next to the first) counts once.
            fresh = [m for i, m in enumerate(fresh) if i == 0 or
                     (fresh[i - 1].alert_id, fresh[i - 1].seq) != (m.alert_id, m.seq)]  # fmt: skip
            if fresh:
                await self._apply(session, fresh, now)
        return Intake(stored=len(fresh), repeated=len(messages) - len(fresh))

    async def _apply(self, session: AsyncSession, fresh: list[wire.Alert], now: datetime) -> None:
        current = await repo.alerts_for_update(session, {m.alert_id for m in fresh})
        owners: dict[str, dict[str, Any] | None] = {}
        feed: list[dict[str, Any]] = []
        for message in fresh:
            before = current.get(message.alert_id)
            after = policy.merged(before, message, now)
            if after is before:
                continue  # an old seq replayed: stored as evidence, changes nothing
            await repo.upsert_alert(session, after)
            current[message.alert_id] = after
            if message.order_id not in owners:
                order = await repo.order_row(session, message.order_id)
                owners[message.order_id] = (
                    None if order is None else order["body"].get("case_owner")
                )
            view = alert_view({**after, "case_owner": owners[message.order_id]})
            feed.append(self._feed_entry("alert", view))
            await self._notify(
                session,
                view,
                f"{message.alert_id}:{message.seq}",
                "alert",
                owners[message.order_id],
            )
            newly_breach = after.get("breach_since") is not None and (
                before is None or before["breach_since"] is None
            )
            if newly_breach and self.referral.counts(message.rule, after["severity"]):
                await self._maybe_refer(session, after, now)
        await repo.append_feed(session, feed)

    @staticmethod
    def _feed_entry(event: str, view: api.AlertView, supervisor: bool = False) -> dict[str, Any]:
        return {
            "event": event, "alert_id": view.alert_id, "region": view.region,
            "probation_officer_id": view.probation_officer_id, "audience": view.audience,
            "supervisor": supervisor, "payload": view.model_dump(mode="json"),
        }  # fmt: skip

    async def _notify(
        self,
        session: AsyncSession,
        view: api.AlertView,
        key: str,
        event: str,
        case_owner: dict[str, Any] | None,
    ) -> None:
        """A webhook delivery per hook of the officer and of the case owner's organisation."""
        organisation = (case_owner or {}).get("organisation") or None
        hooks = await repo.webhooks_for(session, view.probation_officer_id, organisation)
        body = msgspec.json.encode(
            {"event": event, "idempotency_key": key, "alert": view.model_dump(mode="json")}
        )
        await repo.add_deliveries(
            session,
            [{"webhook_id": hook["id"], "idempotency_key": key, "event": event, "payload": body}
             for hook in hooks],
        )  # fmt: skip

    async def _maybe_refer(
        self, session: AsyncSession, alert: dict[str, Any], now: datetime
    ) -> None:
        times = await repo.breach_times(session, alert["order_id"], policy.CONDUCT_RULES)
        if not self.referral.opens(times, now):
            return
        await repo.open_referral(
            session,
            {"order_id": alert["order_id"], "region": alert["region"],
             "probation_officer_id": alert["probation_officer_id"],
             "alert_ids": [alert["alert_id"]]},
        )  # fmt: skip

    # ------------------------------------------------------------ escalation

    async def escalate_due(self, now: datetime) -> int:
        """Escalate every breach nobody acknowledged in time: severity up, onto the supervisor
        feed, the officer notified again. Returns how many."""
        shortest = min(self.escalation.after_s, self.escalation.after_high_risk_s)
        async with transaction(self.sessions) as session:
            candidates = await repo.due_for_escalation(session, now - timedelta(seconds=shortest))
            due = [alert for alert in candidates if self.escalation.due(alert, now)]
            feed = []
            for alert in due:
                changes = {"escalated_at": now,
                           "severity": policy.escalated_severity(alert["severity"])}  # fmt: skip
                await repo.update_alert(session, alert["alert_id"], changes)
                await repo.add_action(session, {
                    "alert_id": alert["alert_id"], "at": now, "actor": "breachwatch",
                    "role": "system", "action": "escalate",
                    "detail": {"unacknowledged_since": alert["breach_since"].isoformat()},
                })  # fmt: skip
                order = await repo.order_row(session, alert["order_id"])
                owner = None if order is None else order["body"].get("case_owner")
                view = alert_view({**alert, **changes, "case_owner": owner})
                feed.append(self._feed_entry("escalation", view, supervisor=True))
                await self._notify(
                    session, view, f"{alert['alert_id']}:{alert['last_seq']}:escalated",
                    "escalation", owner,
                )  # fmt: skip
            await repo.append_feed(session, feed)
        return len(due)

    # ------------------------------------------------------------ alerts, read and handled

    async def list_alerts(
        self, caller: Caller, filters: dict[str, Any], limit: int, reason: str
    ) -> api.AlertList:
        async with transaction(self.sessions) as session:
            head = await repo.feed_head(session)  # before the list: the stream repeats, not skips
            rows = await repo.list_alerts(session, caller, filters, limit)
            shown = ",".join(f"{k}={v}" for k, v in sorted(filters.items()) if v is not None)
            await audit.record(session, caller, action="list_alerts",
                               object=f"alerts:{shown or 'all'}", reason=reason)  # fmt: skip
        return api.AlertList(alerts=[alert_view(row) for row in rows], feed_id=head)

    async def read_alert(self, caller: Caller, alert_id: str, reason: str) -> api.AlertView:
        async with transaction(self.sessions) as session:
            row = await repo.get_alert(session, caller, alert_id)
            await audit.record(session, caller, action="read_alert", object=alert_id, reason=reason)
        if row is None:
            raise NotFound("alert_id", "no such alert")
        return alert_view(row)

    async def act(
        self, caller: Caller, alert_id: str, action: Action, detail: dict[str, Any]
    ) -> api.AlertView:
        """Acknowledge, assign or resolve. A refused attempt (not the caller's alert, or one
        already resolved) is audited as such, then answered."""
        refused: NotFound | Refused | None = None
        async with transaction(self.sessions) as session:
            try:
                view = await self._act(session, caller, alert_id, action, detail)
            except (NotFound, Refused) as exc:
                refused = exc
            await audit.record(
                session, caller, action=f"{action}_alert" + ("_refused" if refused else ""),
                object=alert_id, reason=str(detail.get("notes", "")),
            )  # fmt: skip
        if refused is not None:
            raise refused
        return view

    async def _act(
        self,
        session: AsyncSession,
        caller: Caller,
        alert_id: str,
        action: Action,
        detail: dict[str, Any],
    ) -> api.AlertView:
        now = datetime.now(UTC)
        row = await repo.get_alert(session, caller, alert_id, for_update=True)
        if row is None:
            raise NotFound("alert_id", "no such alert")
        handling = policy.after_action(row["handling"], action)
        changes: dict[str, Any] = {}
        if handling is not None:
            changes["handling"] = handling
        if handling == "acknowledged" or (handling == "resolved" and not row["acknowledged_at"]):
            changes.update(acknowledged_by=caller.sub, acknowledged_at=now)
        if action == "assign":
            changes["assigned_to"] = detail["assignee"]
        if action == "resolve":
            changes.update(resolved_by=caller.sub, resolved_at=now, outcome=detail["outcome"],
                           notes=detail.get("notes") or row["notes"])  # fmt: skip
        if not changes:
            return alert_view(row)  # acknowledged twice: nothing to record but the audit row
        await repo.update_alert(session, alert_id, changes)
        await repo.add_action(session, {
            "alert_id": alert_id, "at": now, "actor": caller.sub, "role": caller.role,
            "action": action, "detail": detail,
        })  # fmt: skip
        view = alert_view({**row, **changes})
        await repo.append_feed(session, [self._feed_entry("action", view)])
        return view

    async def feed(
        self, caller: Caller, after_id: int, *, region: str | None, supervisor: bool
    ) -> list[tuple[int, str, dict[str, Any]]]:
        async with self.sessions() as session:
            rows = await repo.feed_after(session, caller, after_id, region=region,
                                         supervisor=supervisor)  # fmt: skip
        return [(row["id"], row["event"], row["payload"]) for row in rows]

    async def feed_start(self, caller: Caller, last_event_id: int | None, reason: str) -> int:
        """Where a stream starts: after the client's last event, or at the head; audited."""
        async with transaction(self.sessions) as session:
            head = await repo.feed_head(session)
            scope = f"feed:{caller.region or caller.sub}"
            await audit.record(session, caller, action="stream_alerts", object=scope,
                               reason=reason)  # fmt: skip
        return head if last_event_id is None else min(last_event_id, head)

    # ------------------------------------------------------------ webhooks

    def _host_allowed(self, url: str) -> bool:
        allowed = {h.strip().lower() for h in self.settings.webhook_allowed_hosts.split(",")}
        return "*" in allowed or (urlsplit(url).hostname or "").lower() in allowed

    async def create_webhook(self, caller: Caller, body: api.WebhookIn) -> api.WebhookView:
        if not self._host_allowed(body.url):
            raise Refused("url", "this host is not in BW_DISPATCH_WEBHOOK_ALLOWED_HOSTS")
        if caller.role == "probation" and body.probation_officer_id != caller.sub:
            raise Refused("probation_officer_id", "an officer registers webhooks for themselves")
        kind, owner = (
            ("officer", body.probation_officer_id) if body.probation_officer_id
            else ("organisation", body.organisation)
        )  # fmt: skip
        async with transaction(self.sessions) as session:
            row = await repo.create_webhook(session, {
                "owner_kind": kind, "owner": owner, "url": body.url, "secret": body.secret,
                "created_by": caller.sub,
            })  # fmt: skip
            await audit.record(
                session, caller, action="create_webhook", object=f"webhook:{row['id']}"
            )
        return api.WebhookView.model_validate(dict(row))

    async def list_webhooks(self, caller: Caller) -> list[api.WebhookView]:
        async with self.sessions() as session:
            rows = await repo.list_webhooks(session, caller)
        return [api.WebhookView.model_validate(dict(row)) for row in rows]

    async def dead_deliveries(self, caller: Caller, limit: int) -> list[api.DeadDelivery]:
        async with transaction(self.sessions) as session:
            rows = await repo.dead_deliveries(session, limit)
            await audit.record(session, caller, action="list_dead_deliveries", object="webhooks")
        return [api.DeadDelivery.model_validate(dict(row)) for row in rows]

    # ------------------------------------------------------------ referrals

    async def list_referrals(self, caller: Caller) -> list[api.ReferralView]:
        async with transaction(self.sessions) as session:
            rows = await repo.list_referrals(session, caller)
            await audit.record(session, caller, action="list_referrals", object="referrals")
        return [api.ReferralView.model_validate(dict(row)) for row in rows]

    # ------------------------------------------------------------ victim reports

    async def file_report(self, reporter: Actor, body: api.VictimReportIn) -> tuple[str, str]:
        """Store a report; returns its id and the secret token of its status link. The case's
        probation officer is told on their feed and webhooks."""
        if isinstance(reporter, VictimCaller) and reporter.order_id != body.order_id:
            raise NotFound("order_id", "no such order")
        token = secrets.token_urlsafe(24)
        report_id = str(uuid.uuid4())
        async with transaction(self.sessions) as session:
            order = await repo.order_for_report(
                session, None if isinstance(reporter, VictimCaller) else reporter, body.order_id
            )
            if order is None:
                raise NotFound("order_id", "no such order")
            explanation = "Your report has been received and will be assessed by victim support."
            await repo.create_report(session, {
                "report_id": report_id, "order_id": body.order_id, "region": order["region"],
                "probation_officer_id": order["probation_officer_id"],
                "occurred_at": body.occurred_at, "channel": body.channel,
                "description": body.description,
                "evidence": [item.model_dump(mode="json") for item in body.evidence],
                "status": "received", "status_token_hash": _token_hash(token),
                "reported_by": reporter.sub,
            })  # fmt: skip
            await repo.add_report_event(session, {
                "report_id": report_id, "status": "received", "explanation": explanation,
                "actor": reporter.sub, "role": reporter.role,
            })  # fmt: skip
            await self._tell_about_report(session, order, report_id, "received")
            await audit.record(session, reporter, action="file_victim_report",
                               object=f"report:{report_id}")  # fmt: skip
        return report_id, token

    async def _tell_about_report(
        self, session: AsyncSession, order: Any, report_id: str, status: str
    ) -> None:
        notice = {"report_id": report_id, "order_id": order["order_id"], "status": status}
        await repo.append_feed(session, [{
            "event": "victim_report", "alert_id": None, "region": order["region"],
            "probation_officer_id": order["probation_officer_id"], "audience": "probation",
            "supervisor": False, "payload": notice,
        }])  # fmt: skip
        owner = order["body"].get("case_owner") or {}
        hooks = await repo.webhooks_for(
            session, order["probation_officer_id"], owner.get("organisation") or None
        )
        key = f"report:{report_id}:{status}"
        body = msgspec.json.encode({"event": "victim_report", "idempotency_key": key, **notice})
        await repo.add_deliveries(session, [
            {"webhook_id": h["id"], "idempotency_key": key, "event": "victim_report",
             "payload": body}
            for h in hooks
        ])  # fmt: skip

    async def list_reports(
        self, caller: Caller, order_id: str | None, limit: int, reason: str
    ) -> list[api.VictimReportView]:
        async with transaction(self.sessions) as session:
            rows = await repo.list_reports(session, caller, order_id, limit)
            views = [await self._report_view(session, row) for row in rows]
            await audit.record(session, caller, action="list_victim_reports",
                               object=f"reports:{order_id or 'all'}", reason=reason)  # fmt: skip
        return views

    async def read_report(
        self, caller: Caller, report_id: str, reason: str
    ) -> api.VictimReportView:
        async with transaction(self.sessions) as session:
            row = await repo.get_report(session, caller, report_id)
            await audit.record(session, caller, action="read_victim_report",
                               object=f"report:{report_id}", reason=reason)  # fmt: skip
            view = None if row is None else await self._report_view(session, row)
        if view is None:  # after the commit: a refused read is audited too
            raise NotFound("report_id", "no such report")
        return view

    async def set_report_status(
        self, caller: Caller, report_id: str, body: api.ReportStatusIn
    ) -> api.VictimReportView:
        async with transaction(self.sessions) as session:
            row = await repo.get_report(session, caller, report_id, for_update=True)
            if row is None:
                raise NotFound("report_id", "no such report")
            status = policy.report_transition(row["status"], body.status)
            await repo.set_report_status(session, report_id, status)
            await repo.add_report_event(session, {
                "report_id": report_id, "status": status, "explanation": body.explanation,
                "actor": caller.sub, "role": caller.role,
            })  # fmt: skip
            order = await repo.order_row(session, row["order_id"])
            if order is not None:
                await self._tell_about_report(session, order, report_id, status)
            await audit.record(session, caller, action=f"report_{status}",
                               object=f"report:{report_id}", reason=body.explanation)  # fmt: skip
            fresh = await repo.get_report(session, caller, report_id)
            assert fresh is not None
            return await self._report_view(session, fresh)

    async def report_status(self, token: str) -> api.ReportStatusView:
        async with self.sessions() as session:
            row = await repo.report_by_token_hash(session, _token_hash(token))
            if row is None:
                raise NotFound("token", "no report with this status link")
            history = await repo.report_events(session, row["report_id"])
        return api.ReportStatusView(
            report_id=row["report_id"], channel=row["channel"], occurred_at=row["occurred_at"],
            status=row["status"],
            history=[api.ReportEventView.model_validate(dict(e)) for e in history],
        )  # fmt: skip

    @staticmethod
    async def _report_view(session: AsyncSession, row: Any) -> api.VictimReportView:
        history = await repo.report_events(session, row["report_id"])
        return api.VictimReportView(
            **{k: row[k] for k in (
                "report_id", "order_id", "region", "probation_officer_id", "occurred_at",
                "channel", "description", "evidence", "status", "reported_by", "created_at",
            )},
            history=[api.ReportEventView.model_validate(dict(e)) for e in history],
        )  # fmt: skip

    async def order_for_victim_token(self, caller: Caller, order_id: str) -> Any:
        async with transaction(self.sessions) as session:
            order = await repo.order_for_report(session, caller, order_id)
            await audit.record(session, caller, action="mint_victim_token", object=order_id)
        if order is None:  # after the commit: a refused attempt is audited too
            raise NotFound("order_id", "no such order")
        return order


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
