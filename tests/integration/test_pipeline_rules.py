"""Every rule of the core, end to end on the real broker and database: the order issued over
HTTP, the device's positions and events produced to `bw.positions.v1` and
`bw.device-events.v1`, the alerts read back from `bw.alerts.v1`. One scenario walks a real GPS
track (tests/data/tracks) through a location ban; the plain location-ban walk-in is in
test_pipeline.py."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

import pytest

from services.adapters.settings import RuleTimings, Settings
from tests.support.orders import circle, square
from tests.support.pipeline import (
    Pipeline,
    Records,
    alerts_of,
    by_episode,
    device_event,
    issue,
    new_device,
    position,
    running_pipeline,
)
from tests.support.scenario import produce
from tests.support.tracks import load

pytestmark = pytest.mark.integration

SIGNAL_LOST_AFTER_S = 4.0
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@pytest.fixture(scope="module")
async def pipeline(migrated: Settings) -> AsyncIterator[Pipeline]:
    # A short signal-lost threshold so that rule is seen within the test; the other orders
    # of this module raise it too, and each test looks at its own order and rule only.
    rules = RuleTimings(signal_lost_after_s=SIGNAL_LOST_AFTER_S)
    async with running_pipeline(migrated.model_copy(update={"rules": rules})) as running:
        yield running


async def positions(pipeline: Pipeline, records: Records) -> None:
    await produce(pipeline.settings, pipeline.settings.topic("positions.v1"), records)


async def events(pipeline: Pipeline, records: Records) -> None:
    await produce(pipeline.settings, pipeline.settings.topic("device-events.v1"), records)


async def test_area_ban_by_municipality_code(pipeline: Pipeline) -> None:
    device = new_device()
    zone = {"zone_id": "utrecht", "kind": "area_ban", "municipality_code": "GM0344"}
    order_id = await issue(pipeline, device, contact_bans=[], zones=[zone])
    start = time.time() - 3000
    # From 30 km west (Bodegraven-Reeuwijk) to the Domplein at 20 m/s, a fix a minute.
    key = device.encode()
    await positions(pipeline, [
        (key, position(device, start + n * 60, -30_000 + n * 1200, 0)) for n in range(26)
    ])  # fmt: skip
    bans = await alerts_of(pipeline.settings, order_id, "area_ban")
    assert (bans[0].seq, bans[0].status, bans[0].severity, bans[0].certainty) == (
        0, "open", "breach", "certain",
    )  # fmt: skip
    assert bans[0].zone_id == "utrecht"
    assert bans[0].distance_m is not None and bans[0].distance_m < 0  # inside the boundary


async def test_polygon_area_ban_opens_and_closes(pipeline: Pipeline) -> None:
    device = new_device()
    order_id = await issue(pipeline, device, contact_bans=[], zones=[square("park", 0, 0, 150)])
    start = time.time() - 600
    key = device.encode()
    path = [(-1000, 0), (-500, 0), (0, 0), (50, 0), (-500, 0), (-1000, 0), (-1000, 0), (-1000, 0)]
    await positions(pipeline, [
        (key, position(device, start + n * 60, x, y)) for n, (x, y) in enumerate(path)
    ])  # fmt: skip
    bans = await alerts_of(pipeline.settings, order_id, "area_ban",
                           until=lambda a: any(x.status == "closed" for x in a))  # fmt: skip
    episodes = by_episode(bans)
    assert list(episodes.values()) == [[(0, "open"), (1, "closed")]], episodes


async def test_contact_ban_between_two_moving_devices(pipeline: Pipeline) -> None:
    subject, victim = new_device(), new_device("VD")
    order_id = await issue(
        pipeline, subject, victim_device=victim, zones=[],
        contact_bans=[{"protected_person_id": "V-1", "min_distance_m": 200}],
    )  # fmt: skip
    start = time.time() - 600
    records: Records = []
    for n in range(8):  # the victim walks east, the subject closes in from 3 km
        t = start + n * 20
        records.append((victim.encode(), position(victim, t, n * 10, 0, accuracy_m=8)))
        records.append((subject.encode(), position(subject, t + 2, 3000 - n * 420, 0)))
    await positions(pipeline, records)
    bans = await alerts_of(pipeline.settings, order_id, "contact_ban")
    assert (bans[0].status, bans[0].severity, bans[0].certainty) == ("open", "breach", "certain")
    assert bans[0].distance_m is not None and bans[0].distance_m < 200


async def test_presence_obligation_away_from_home_inside_its_window(pipeline: Pipeline) -> None:
    device = new_device()
    always = [{"days": EVERY_DAY, "start": "00:00", "end": "00:00"}]  # a whole day, every day
    home = circle("home", 0, 0, 100, kind="presence_obligation", schedule=always)
    order_id = await issue(pipeline, device, contact_bans=[], zones=[home])
    start = time.time() - 600
    key = device.encode()
    await positions(pipeline, [
        (key, position(device, start, 0, 0)),
        (key, position(device, start + 60, 2000, 0)),
        (key, position(device, start + 120, 2500, 0)),
    ])  # fmt: skip
    away = await alerts_of(pipeline.settings, order_id, "presence_obligation")
    assert (away[0].status, away[0].severity, away[0].certainty) == ("open", "breach", "certain")
    assert away[0].distance_m == pytest.approx(1900, abs=5)


async def test_signal_lost_on_the_wall_clock_and_closed_by_the_next_fix(
    pipeline: Pipeline,
) -> None:
    device = new_device()
    order_id = await issue(pipeline, device, contact_bans=[], zones=[circle("home", 0, 0, 50)])
    key = device.encode()
    await positions(pipeline, [(key, position(device, time.time() - 1, 3000, 0))])
    lost = await alerts_of(pipeline.settings, order_id, "signal_lost")
    assert (lost[0].seq, lost[0].status, lost[0].severity) == (0, "open", "warning")
    await positions(pipeline, [(key, position(device, time.time(), 3000, 0))])
    lost = await alerts_of(pipeline.settings, order_id, "signal_lost",
                           until=lambda a: any(x.status == "closed" for x in a))  # fmt: skip
    assert {a.alert_id for a in lost} == {lost[0].alert_id}  # one episode, opened and closed


async def test_tamper_is_critical_at_once(pipeline: Pipeline) -> None:
    device = new_device()
    order_id = await issue(pipeline, device, contact_bans=[], zones=[circle("home", 0, 0, 50)])
    await events(pipeline, [(device.encode(), device_event(device, time.time(), "strap_tamper"))])
    tamper = await alerts_of(pipeline.settings, order_id, "tamper")
    assert (tamper[0].status, tamper[0].severity, tamper[0].certainty) == (
        "open", "critical", "certain",
    )  # fmt: skip


async def test_low_battery_warns_probation_only(pipeline: Pipeline) -> None:
    device = new_device()
    order_id = await issue(pipeline, device, contact_bans=[], zones=[circle("home", 0, 0, 50)])
    now = time.time()
    key = device.encode()
    await positions(pipeline, [(key, position(device, now - 20, 3000, 0))])
    await events(pipeline, [(key, device_event(device, now - 10, "battery", battery_pct=6))])
    low = await alerts_of(pipeline.settings, order_id, "battery_low")
    assert (low[0].status, low[0].severity, low[0].audience) == ("open", "warning", "probation")


async def test_a_real_run_passing_a_location_ban_once(pipeline: Pipeline) -> None:
    """The Leuven run, moved to Utrecht: one pass by a 40 m disc at its farthest point ->
    one episode, a certain breach, closed once the runner is clearly away (worked out in
    tests/unit/test_core_real_tracks.py)."""
    track = load("leuven-run.gpx")
    far = max(track, key=lambda p: math.hypot(p.x, p.y))
    device = new_device()
    order_id = await issue(
        pipeline, device, contact_bans=[], zones=[circle("far", far.x, far.y, 40)]
    )
    start = time.time() - track[-1].dt - 60
    key = device.encode()
    await positions(pipeline, [(key, position(device, start + p.dt, p.x, p.y)) for p in track])
    bans = await alerts_of(pipeline.settings, order_id, "location_ban",
                           until=lambda a: any(x.status == "closed" for x in a))  # fmt: skip
    episodes = by_episode(bans)
    assert len(episodes) == 1, episodes
    (steps,) = episodes.values()
    assert steps[0] == (0, "open") and steps[-1][1] == "closed"
    assert (bans[-1].severity, bans[-1].certainty) == ("breach", "certain")
