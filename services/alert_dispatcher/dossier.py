"""The breach dossier and the map layers of an alert.

A dossier is what a prosecutor needs to sanction a breach quickly: the order version in force,
the zone, every fix of the episode with its accuracy and its raw record's place in Kafka, the
device's health around it, and what people did. The evidence part is hashed (SHA-256 over
canonical JSON) and frozen in Postgres once the episode has closed; the timeline of actions
stays live beside it. Every access writes an audit row.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from geo import municipalities
from geo.shapes import circle_polygon
from services.adapters import audit
from services.adapters.auth import Caller
from services.adapters.database import transaction
from services.adapters.settings import Settings
from services.alert_dispatcher import repository as repo
from services.alert_dispatcher.evidence import Evidence, signals_of_order
from services.alert_dispatcher.service import NotFound, alert_view

HEALTH_RULES = ("signal_lost", "tamper", "battery_low")
BEFORE = timedelta(minutes=10)  # the approach, before the episode opened
AFTER = timedelta(minutes=5)  # and the leaving, after it closed
TRACK = timedelta(minutes=30)  # the map's recent track


def content_hash(evidence: dict[str, Any]) -> str:
    canonical = json.dumps(evidence, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class DossierService:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions

    async def dossier(self, caller: Caller, alert_id: str, reason: str) -> dict[str, Any]:
        async with transaction(self.sessions) as session:
            alert = await repo.get_alert(session, caller, alert_id)
            await audit.record(session, caller, action="read_dossier", object=alert_id,
                               reason=reason)  # fmt: skip
            if alert is not None:
                frozen = await repo.frozen_dossier(session, alert_id)
                actions = [_action(a) for a in await repo.actions_of(session, alert_id)]
        if alert is None:  # after the commit: a refused read is audited too
            raise NotFound("alert_id", "no such alert")
        if frozen is not None:
            evidence, digest = frozen["content"], frozen["content_hash"]
        else:
            evidence = await self._evidence(alert)
            digest = content_hash(evidence)
            if alert["episode_status"] == "closed" and evidence["signals_complete"]:
                async with transaction(self.sessions) as session:
                    await repo.freeze_dossier(session, alert_id, evidence, digest)
                    kept = await repo.frozen_dossier(session, alert_id)
                if kept is not None:  # another reader froze it first: theirs is the record
                    evidence, digest = kept["content"], kept["content_hash"]
        return {
            "alert_id": alert_id, "content_hash": digest, "frozen": frozen is not None
            or alert["episode_status"] == "closed", "evidence": evidence, "timeline": actions,
            "generated_at": datetime.now(UTC).isoformat(),
        }  # fmt: skip

    async def _evidence(self, alert: dict[str, Any]) -> dict[str, Any]:
        start = alert["episode_started_at"] - BEFORE
        end = (alert["closed_at"] or datetime.now(UTC)) + AFTER
        async with self.sessions() as session:
            version = await repo.version_in_force(
                session, alert["order_id"], alert["first_detected_at"]
            )
            messages = [
                dict(m["payload"]) for m in await repo.messages_of(session, alert["alert_id"])
            ]
            health = await repo.alerts_of_order_between(
                session, alert["order_id"], HEALTH_RULES, start, end
            )
        found = await self._signals(alert["order_id"], start, end)
        order_body = None if version is None else version["body"]
        devices = _devices_in_evidence(alert, order_body)
        fixes, events = [], []
        for signal in found.signals:
            if signal.device_id not in devices:
                continue
            entry = {"device_id": signal.device_id, "role": signal.role,
                     "source": msgspec.to_builtins(signal.source)}  # fmt: skip
            if signal.position is not None:
                p = signal.position
                fixes.append({**entry, "ts": p.ts.isoformat(), "lat": p.lat, "lon": p.lon,
                              "accuracy_m": p.accuracy_m, "source_kind": p.source,
                              "battery_pct": p.battery_pct})  # fmt: skip
            elif signal.event is not None:
                e = signal.event
                events.append({**entry, "ts": e.ts.isoformat(), "type": e.type,
                               "battery_pct": e.battery_pct})  # fmt: skip
        fixes.sort(key=lambda f: (f["ts"], f["device_id"]))
        events.sort(key=lambda e: (e["ts"], e["device_id"]))
        return {
            "alert": alert_view({**alert, "case_owner": None}).model_dump(
                mode="json", exclude={"case_owner", "handling", "assigned_to", "acknowledged_by",
                                      "acknowledged_at", "resolved_by", "resolved_at", "outcome",
                                      "notes", "escalated_at", "received_at"}),
            "messages": messages,
            "order": None if version is None else {
                "order_id": version["order_id"], "version": version["version"],
                "event_type": version["event_type"], "event_id": version["event_id"],
                "received_at": version["received_at"].isoformat(),
                "content_hash": version["content_hash"], "body": version["body"],
            },
            "zone": _zone_of(alert, order_body),
            "window": {"from": start.isoformat(), "to": end.isoformat()},
            "fixes": fixes,
            "device_events": events,
            "health_alerts": [
                {"alert_id": h["alert_id"], "rule": h["rule"], "severity": h["severity"],
                 "episode_started_at": h["episode_started_at"].isoformat(),
                 "closed_at": None if h["closed_at"] is None else h["closed_at"].isoformat()}
                for h in health
            ],
            "signals_scanned": found.scanned,
            "signals_complete": found.complete,
        }  # fmt: skip

    async def _signals(self, order_id: str, start: datetime, end: datetime) -> Evidence:
        # Bounded: a dossier must answer even when Kafka is slow; an incomplete scan is said
        # so in the dossier and is not frozen.
        try:
            return await asyncio.wait_for(
                signals_of_order(self.settings, order_id, start, end), timeout=30
            )
        except TimeoutError:
            return Evidence([], 0, False)

    async def map_layers(self, caller: Caller, alert_id: str, reason: str) -> dict[str, Any]:
        async with transaction(self.sessions) as session:
            alert = await repo.get_alert(session, caller, alert_id)
            await audit.record(session, caller, action="read_alert_map", object=alert_id,
                               reason=reason)  # fmt: skip
            order = None if alert is None else await repo.order_row(session, alert["order_id"])
        if alert is None:  # after the commit: a refused read is audited too
            raise NotFound("alert_id", "no such alert")
        body = None if order is None else order["body"]
        end = alert["last_detected_at"]
        found = await self._signals(alert["order_id"], end - TRACK, end + timedelta(minutes=1))
        subject = None if body is None else body["subject"].get("device_id")
        fixes = sorted(
            (s.position for s in found.signals
             if s.position is not None and s.device_id == subject),
            key=lambda p: p.ts,
        )  # fmt: skip
        track = [{"lat": p.lat, "lon": p.lon, "accuracy_m": p.accuracy_m, "ts": p.ts.isoformat()}
                 for p in fixes]  # fmt: skip
        zones = [] if body is None else [_zone_feature(z, alert) for z in body["zones"]]
        return {
            "alert_id": alert_id,
            "zones": {"type": "FeatureCollection", "features": zones},
            "track": track,
            "position": alert["latest"].get("position"),
        }  # fmt: skip

    @staticmethod
    def outlines() -> bytes:
        return _outlines_json()


@cache
def _outlines_json() -> bytes:
    return json.dumps(municipalities.simplified_collection(), separators=(",", ":")).encode()


def _devices_in_evidence(alert: dict[str, Any], order: dict[str, Any] | None) -> set[str]:
    """The subject's device; for a contact ban also the protected person's, whose fixes are the
    other half of the distance."""
    if order is None:
        return set()
    devices = {order["subject"].get("device_id")}
    if alert["rule"] == "contact_ban":
        devices |= {p.get("device_id") for p in order["protected_persons"]
                    if p["person_id"] == alert["protected_person_id"]}  # fmt: skip
    return {d for d in devices if d}


def _zone_of(alert: dict[str, Any], order: dict[str, Any] | None) -> dict[str, Any] | None:
    if order is None:
        return None
    if alert["rule"] == "contact_ban":
        for ban in order["contact_bans"]:
            if ban["protected_person_id"] == alert["protected_person_id"]:
                return {"contact_ban": ban}
        return None
    for zone in order["zones"]:
        if zone["zone_id"] == alert["zone_id"]:
            found: dict[str, Any] = zone
            return found
    return None


def _zone_feature(zone: dict[str, Any], alert: dict[str, Any]) -> dict[str, Any]:
    if zone.get("municipality_code"):
        geometry = municipalities.geometry(zone["municipality_code"])
    elif zone["geometry"]["type"] == "Point":
        lon, lat = zone["geometry"]["coordinates"][:2]
        geometry = circle_polygon(lat, lon, zone["radius_m"])
    else:
        geometry = zone["geometry"]
    return {
        "type": "Feature", "geometry": geometry,
        "properties": {"zone_id": zone["zone_id"], "kind": zone["kind"],
                       "label": zone.get("label", ""),
                       "alerting": zone["zone_id"] == alert["zone_id"]},
    }  # fmt: skip


def _action(row: Any) -> dict[str, Any]:
    return {"at": row["at"].isoformat(), "actor": row["actor"], "role": row["role"],
            "action": row["action"], "detail": row["detail"]}  # fmt: skip


# ---------------------------------------------------------------- printable page


def render_html(dossier: dict[str, Any]) -> str:
    """The dossier as one printable page, every value escaped."""
    ev = dossier["evidence"]
    alert = ev["alert"]
    e = html.escape

    def rows(items: list[dict[str, Any]], columns: list[str]) -> str:
        head = "".join(f"<th>{e(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(str(item.get(c, '')))}</td>" for c in columns) + "</tr>"
            for item in items
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    order = ev.get("order") or {}
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Breach dossier {e(dossier["alert_id"])}</title>
<style>
body{{font:12px/1.4 system-ui,sans-serif;margin:2em;color:#111}}
h1{{font-size:18px}} h2{{font-size:14px;margin-top:1.5em;border-bottom:1px solid #999}}
table{{border-collapse:collapse;width:100%}} td,th{{border:1px solid #bbb;padding:2px 4px;
text-align:left;vertical-align:top}} .hash{{font-family:monospace;word-break:break-all}}
pre{{white-space:pre-wrap;font-size:11px}} @media print{{body{{margin:0}}}}
</style></head><body>
<h1>Breach dossier — {e(alert["rule"])} on order {e(alert["order_id"])}</h1>
<p>Alert <b>{e(dossier["alert_id"])}</b>; severity <b>{e(alert["severity"])}</b>,
{e(alert["certainty"])}; episode from {e(alert["episode_started_at"])}
{("to " + e(str(alert["closed_at"]))) if alert.get("closed_at") else "(still open)"}.</p>
<p>Content hash (SHA-256 of the evidence): <span class="hash">{e(dossier["content_hash"])}</span>
— {"frozen" if dossier["frozen"] else "provisional: the episode is still open"}.
Generated {e(dossier["generated_at"])}.</p>
<h2>Order in force</h2>
<p>Version {e(str(order.get("version", "?")))} ({e(str(order.get("event_type", "")))}, received
{e(str(order.get("received_at", "")))}, content hash
<span class="hash">{e(str(order.get("content_hash", "")))}</span>).</p>
<h2>Zone</h2><pre>{e(json.dumps(ev.get("zone"), indent=1)[:20000])}</pre>
<h2>Fixes ({len(ev["fixes"])}; window {e(ev["window"]["from"])} – {e(ev["window"]["to"])})</h2>
{rows(ev["fixes"], ["ts", "device_id", "role", "lat", "lon", "accuracy_m", "source_kind"])}
<h2>Device health</h2>
{rows(ev["device_events"], ["ts", "device_id", "type", "battery_pct"])}
{rows(ev["health_alerts"], ["rule", "severity", "episode_started_at", "closed_at"])}
<h2>Alert messages</h2>
{rows(ev["messages"], ["seq", "status", "severity", "certainty", "detected_at", "distance_m"])}
<h2>Timeline of actions</h2>
{rows(dossier["timeline"], ["at", "actor", "role", "action", "detail"])}
</body></html>"""
