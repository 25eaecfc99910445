"""Getting alerts to people through failures: the live feed across a dropped connection
(`Last-Event-ID`), and webhooks to a receiver that is down for a minute, on a live server with
real Kafka and Postgres."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from deploy.scratch import free_port
from services.adapters.settings import Settings
from services.adapters.tables import webhook_deliveries
from services.alert_dispatcher import policy
from services.http import create_app
from tests.support.alerts import alert, order_for_alerts, produce
from tests.support.http import auth
from tests.support.kafka import wait_for
from tests.support.server import serving

pytestmark = pytest.mark.integration
REGION = "midden-nederland"


@pytest.fixture(scope="module")
def live(migrated: Settings) -> Iterator[tuple[str, Settings]]:
    settings = migrated.model_copy(update={"dispatch": migrated.dispatch.model_copy(update={
        "webhook_backoff_base_s": 0.5, "webhook_backoff_cap_s": 4.0,
        "escalate_after_s": 3600.0, "escalate_after_high_risk_s": 3600.0,
    })})  # fmt: skip
    with serving(create_app(settings, services=("ingest", "dispatcher"))) as url:
        yield url, settings


@dataclass
class FeedReader:
    """Reads the live feed; `drop_after` events in, it hangs up and reconnects with the last
    id it saw, as the control-room page does."""

    url: str
    headers: dict[str, str]
    order_id: str
    ids: list[int] = field(default_factory=list)
    seen: list[tuple[str, int]] = field(default_factory=list)
    connections: int = 0

    async def read(self, want: int, drop_after: int, timeout_s: float) -> None:
        last: int | None = None
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as http:
            while len(self.seen) < want and time.monotonic() < deadline:
                headers = dict(self.headers) | ({"Last-Event-ID": str(last)} if last else {})
                self.connections += 1
                async with http.stream("GET", f"{self.url}/v1/alerts/stream",
                                       headers=headers) as answer:  # fmt: skip
                    assert answer.status_code == 200
                    event_id, event = None, None
                    async for line in answer.aiter_lines():
                        if line.startswith("id: "):
                            event_id = int(line[4:])
                        elif line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event_id is not None:
                            payload = json.loads(line[6:])
                            self.ids.append(event_id)
                            last = event_id
                            if event == "alert" and payload["order_id"] == self.order_id:
                                self.seen.append((payload["alert_id"], payload["last_seq"]))
                        if len(self.seen) >= want:
                            return
                        if self.connections == 1 and len(self.seen) >= drop_after:
                            break  # hang up mid-stream; alerts keep coming meanwhile
                await asyncio.sleep(1.5)


async def test_a_feed_resumed_with_last_event_id_gets_every_alert_exactly_once(
    live: tuple[str, Settings],
) -> None:
    url, settings = live
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        order_id = await order_for_alerts(http, settings)
    messages = []
    for n in range(30):
        first = alert(order_id, severity="warning", started=time.time() - n)
        messages += [first, alert(order_id, alert_id=first.alert_id, seq=1, status="updated")]
    reader = FeedReader(url, auth(settings, "operator", "op-1", REGION), order_id)
    reading = asyncio.create_task(reader.read(want=60, drop_after=15, timeout_s=60))
    await asyncio.sleep(0.5)
    for start in range(0, 60, 6):
        await produce(settings, messages[start : start + 6])
        await asyncio.sleep(0.3)
    await reading
    assert reader.connections >= 2, "the reader never hung up: the test proved nothing"
    assert sorted(reader.seen) == sorted((m.alert_id, m.seq) for m in messages)
    assert len(set(reader.seen)) == len(reader.seen) == 60
    assert reader.ids == sorted(set(reader.ids)), "event ids repeated or went backwards"


@dataclass
class Receiver:
    """A webhook receiver that records every request, started and stopped on demand."""

    port: int
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.received.append((headers, body))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def start(self) -> None:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="off", interface="asgi3")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)


async def test_webhooks_reach_a_receiver_that_was_down_for_a_minute_once_each_and_signed(
    live: tuple[str, Settings],
) -> None:
    url, settings = live
    officer, secret = f"po-hook-{int(time.time())}", "a-long-shared-secret-for-hmac"
    receiver = Receiver(free_port())
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        order_id = await order_for_alerts(http, settings, officer=officer)
        hook = await http.post(
            "/v1/webhooks", headers=auth(settings, "probation", officer),
            json={"url": f"http://127.0.0.1:{receiver.port}/breachwatch", "secret": secret,
                  "probation_officer_id": officer},
        )  # fmt: skip
        assert hook.status_code == 201, hook.text
    messages = [alert(order_id, officer=officer, started=time.time() - n) for n in range(10)]
    messages += [alert(order_id, officer=officer, alert_id=m.alert_id, seq=1, status="closed")
                 for m in messages]  # fmt: skip
    await produce(settings, messages)
    await asyncio.sleep(60)  # nobody listening: every attempt fails and is retried
    receiver.start()
    try:
        expected = {f"{m.alert_id}:{m.seq}" for m in messages}

        async def all_in() -> bool:
            return expected <= {h["idempotency-key"] for h, _ in list(receiver.received)}

        assert await wait_for(all_in, timeout_s=30), "not every notification arrived"
    finally:
        receiver.stop()
    keys = [h["idempotency-key"] for h, _ in receiver.received]
    assert set(keys) == expected  # nothing else, e.g. another officer's alerts
    for headers, body in receiver.received:
        stamp = int(headers[policy.TIMESTAMP_HEADER.lower()])
        signed = headers[policy.SIGNATURE_HEADER.lower()]
        assert policy.signature_valid(secret, stamp, body, signed), "bad signature"
        assert not policy.signature_valid("another-secret-entirely!", stamp, body, signed)
        sent = json.loads(body)
        assert sent["idempotency_key"] == headers["idempotency-key"]
        assert sent["alert"]["order_id"] == order_id
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(
                select(webhook_deliveries.c.status, webhook_deliveries.c.attempts)
                .where(webhook_deliveries.c.webhook_id == hook.json()["id"])
            )).all()  # fmt: skip
    finally:
        await engine.dispose()
    assert {status for status, _ in rows} == {"delivered"}
    assert min(attempts for _, attempts in rows) > 1, "the receiver was never found down"


async def test_a_delivery_failing_past_the_retry_period_is_dead_lettered_for_an_admin(
    live: tuple[str, Settings],
) -> None:
    url, settings = live
    officer = f"po-dead-{int(time.time())}"
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        order_id = await order_for_alerts(http, settings, officer=officer)
        hook = await http.post(
            "/v1/webhooks", headers=auth(settings, "admin"),
            json={"url": f"http://127.0.0.1:{free_port()}/gone", "secret": "s" * 32,
                  "probation_officer_id": officer},
        )  # fmt: skip
        assert hook.status_code == 201
        await produce(settings, [alert(order_id, officer=officer)])
        engine = create_async_engine(settings.database_url)
        mine = webhook_deliveries.c.webhook_id == hook.json()["id"]
        try:

            async def attempted() -> bool:
                async with engine.connect() as conn:
                    return bool(
                        await conn.scalar(select(webhook_deliveries.c.attempts).where(mine))
                    )

            assert await wait_for(attempted), "the delivery was never attempted"
            # 25 hours on: the next failure is the last
            async with engine.begin() as conn:
                await conn.execute(update(webhook_deliveries).where(mine).values(
                    created_at=datetime.now(UTC) - timedelta(hours=25)))  # fmt: skip

            async def dead() -> list[dict[str, Any]]:
                answer = await http.get(
                    "/v1/webhooks/dead-letters", headers=auth(settings, "admin")
                )
                assert answer.status_code == 200, answer.text
                return [d for d in answer.json() if d["webhook_id"] == hook.json()["id"]]

            letters = await wait_for(dead, timeout_s=20)
        finally:
            await engine.dispose()
        assert len(letters) == 1 and letters[0]["last_error"] == "ConnectError", letters
        refused = await http.get("/v1/webhooks/dead-letters", headers=auth(settings, "probation",
                                                                            officer))  # fmt: skip
        assert refused.status_code == 403
