"""The rules engine: every decision about a breach, pure and deterministic.

    evaluate(state, signal, order, now) -> (state, alerts)   one fix or device event
    tick(state, order, now)             -> (state, alerts)   wall-clock timers, expiry
    apply_order(state, order, now)      -> (state, alerts)   a new version or a revocation

`now` is the wall-clock time of the caller, passed in: the engine has no clock. For speed the
state passed in is updated in place and returned (one owner per order state, the evaluator's
partition); `copy_state` gives an independent copy where one is needed.

Semantics (DESIGN.md "Rules the core must get right"):
- A fix is a disc of radius `accuracy_m`. Against a zone it is certainly inside (the whole disc),
  possibly inside (the disc straddles the edge), in the warning buffer, or clear.
- One episode per order x rule x zone (or protected person, or device), with one `alert_id`
  derived from (order, rule, zone/person/device, episode start in event time). It opens at the
  first warning or breach; a certain breach alerts at once, a possible one after it persists
  (dwell: `dwell_fixes` fixes or `dwell_s` seconds). Severity and certainty only rise within an
  episode, each rise a new `seq`. It closes after `hysteresis_s` of being clearly outside;
  re-entry before that continues it.
- Fixes are evaluated per device in event-time order. A fix older than the device's newest is
  kept as evidence (`late: true`) without rolling the running state back.
- A jump faster than `max_speed_mps` marks the fix an outlier: never a certain breach on its own.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from datetime import UTC, datetime

import msgspec

from geo.projection import fast_distance_m
from schemas.wire import Alert, AlertPosition, AlertStatus, Certainty, Rule, Severity
from services.core.config import DEFAULT_RULES, RuleConfig
from services.core.model import (
    CompiledContactBan,
    CompiledOrder,
    CompiledZone,
    DeviceTrack,
    Episode,
    Fix,
    HealthEvent,
    OrderState,
    Signal,
    SignalRejected,
)

CLEAR, WARNING, POSSIBLE, CERTAIN = 0, 1, 2, 3
SEVERITY_RANK: dict[str | None, int] = {None: 0, "warning": 1, "breach": 2, "critical": 3}
CERTAINTY_RANK: dict[str | None, int] = {None: 0, "possible": 1, "certain": 2}
ALERT_NAMESPACE = uuid.UUID("5b0c1f8e-2f7a-4c1e-9d7e-6a1b2c3d4e5f")
TAMPER_EVENTS = frozenset({"strap_tamper", "case_tamper"})

Outcome = tuple[OrderState, list[Alert]]


# ---------------------------------------------------------------- small pure pieces


_ALERT_NAMESPACE_BYTES = ALERT_NAMESPACE.bytes


def alert_id(order_id: str, rule: str, subject_key: str, started_at: float) -> str:
    """Deterministic: a replay after a crash gives the same id for the same episode.

    It is uuid.uuid5(ALERT_NAMESPACE, name) as text, formatted from the SHA-1 digest here
    (~1.5 us, against ~4 us through uuid.UUID): every episode that opens pays for it."""
    name = f"{order_id}|{rule}|{subject_key}|{round(started_at * 1000)}"
    digest = hashlib.sha1(_ALERT_NAMESPACE_BYTES + name.encode(), usedforsecurity=False)
    h = digest.hexdigest()
    # version 5 in the 13th digit, the RFC 4122 variant (binary 10) in the 17th
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def disc_level(distance_m: float, accuracy_m: float, buffer_m: float) -> int:
    """Classify a disc against a forbidden region by the signed distance of its centre to the
    region's edge (negative inside)."""
    if distance_m <= -accuracy_m:
        return CERTAIN
    if distance_m < accuracy_m:
        return POSSIBLE
    if distance_m < accuracy_m + buffer_m:
        return WARNING
    return CLEAR


def raise_only(
    severity: str | None, certainty: str | None, new_severity: str, new_certainty: str
) -> tuple[str, str]:
    """Severity never falls within an episode; certainty counts only at the same severity."""
    old, new = SEVERITY_RANK[severity], SEVERITY_RANK[new_severity]
    if new > old:
        return new_severity, new_certainty
    assert severity is not None
    if new == old and CERTAINTY_RANK[new_certainty] > CERTAINTY_RANK[certainty]:
        return severity, new_certainty
    assert certainty is not None
    return severity, certainty


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


def check_signal(signal: Signal, now: float, rules: RuleConfig = DEFAULT_RULES) -> None:
    """Raise SignalRejected, with the reason, for a signal the engine must not use."""
    if not math.isfinite(signal.t):
        raise SignalRejected("ts: not a finite time")
    ahead = signal.t - now
    if ahead > rules.max_future_skew_s:
        raise SignalRejected(
            f"ts: {ahead:.0f} s in the future (at most {rules.max_future_skew_s:.0f} s)"
        )
    if isinstance(signal, Fix):
        if not (math.isfinite(signal.lat) and -90.0 <= signal.lat <= 90.0):
            raise SignalRejected("lat: must be a finite number in [-90, 90]")
        if not (math.isfinite(signal.lon) and -180.0 <= signal.lon <= 180.0):
            raise SignalRejected("lon: must be a finite number in [-180, 180]")
        if not (math.isfinite(signal.accuracy_m) and signal.accuracy_m > 0.0):
            raise SignalRejected("accuracy_m: must be a finite number > 0")


def too_fast(
    lat: float, lon: float, accuracy_m: float, t: float, fix: Fix, max_speed_mps: float
) -> bool:
    """Could not have got from the earlier fix to this one at `max_speed_mps`, even using both
    accuracy discs in its favour (a duplicate timestamp counts as one second)."""
    jump = fast_distance_m(lat, lon, fix.lat, fix.lon) - fix.accuracy_m - accuracy_m
    return jump > max_speed_mps * max(fix.t - t, 1.0)


def is_outlier(track: DeviceTrack, fix: Fix, rules: RuleConfig) -> bool:
    """Faster than a car from the last good fix, unless it agrees with an earlier outlier (two
    consistent fixes confirm a real jump, so a train ride does not stay an outlier forever)."""
    if track.good_t is None:
        return False
    limit = rules.max_speed_mps
    if not too_fast(
        track.good_lat, track.good_lon, track.good_accuracy_m, track.good_t, fix, limit
    ):
        return False
    confirms_previous = (
        track.outlier
        and track.last_t is not None
        and not too_fast(track.lat, track.lon, track.accuracy_m, track.last_t, fix, limit)
    )
    return not confirms_previous


def record_fix(track: DeviceTrack, fix: Fix, outlier: bool) -> None:
    """An in-order fix becomes the device's newest, and its newest good one unless an outlier.
    The batch path does this alone for a fix that changes nothing else (services/core/batch.py)."""
    track.last_t, track.lat, track.lon, track.accuracy_m = fix.t, fix.lat, fix.lon, fix.accuracy_m
    track.outlier = outlier
    if not outlier:
        track.good_t, track.good_lat, track.good_lon = fix.t, fix.lat, fix.lon
        track.good_accuracy_m = fix.accuracy_m


def copy_state(state: OrderState) -> OrderState:
    return msgspec.json.decode(msgspec.json.encode(state), type=OrderState)


# ---------------------------------------------------------------- alerts


def _alert(
    order: CompiledOrder,
    episode: Episode,
    status: AlertStatus,
    now: float,
    *,
    fix: Fix | DeviceTrack | None = None,
    fix_t: float | None = None,
    distance_m: float | None = None,
    late: bool = False,
    reason: str = "",
) -> Alert:
    rule: Rule = episode.rule  # type: ignore[assignment]
    position = None
    if fix is not None:
        at = fix.t if isinstance(fix, Fix) else fix_t
        if at is not None:
            position = AlertPosition(
                lat=fix.lat, lon=fix.lon, accuracy_m=fix.accuracy_m, ts=_utc(at)
            )
    zone_id = (
        episode.subject_key if rule in ("location_ban", "area_ban", "presence_obligation") else None
    )
    severity: Severity = episode.severity  # type: ignore[assignment]
    certainty: Certainty = episode.certainty  # type: ignore[assignment]
    return Alert(
        alert_id=episode.alert_id,
        seq=episode.seq,
        order_id=order.order_id,
        rule=rule,
        severity=severity,
        certainty=certainty,
        status=status,
        episode_started_at=_utc(episode.started_at),
        detected_at=_utc(now),
        region=order.region,
        probation_officer_id=order.probation_officer_id,
        zone_id=zone_id,
        protected_person_id=episode.subject_key if rule == "contact_ban" else None,
        late=late,
        position=position,
        distance_m=None if distance_m is None else round(distance_m, 1),
        risk_level=order.risk_level,
        audience="probation" if rule == "battery_low" else "all",
        reason=reason,
    )


def open_episode(
    state: OrderState,
    order: CompiledOrder,
    key: str,
    rule: str,
    subject_key: str,
    t: float,
    **fields: object,
) -> Episode:
    """Start an episode under `key`. Its start is at least a millisecond after the previous
    episode's of the same key, so two episodes never share an alert_id, whatever the input."""
    previous = state.last_started.get(key)
    started = t if previous is None or t > previous else previous + 0.001
    state.last_started[key] = started
    episode = Episode(
        alert_id=alert_id(order.order_id, rule, subject_key, started),
        rule=rule,
        subject_key=subject_key,
        started_at=started,
        **fields,  # type: ignore[arg-type]
    )
    state.episodes[key] = episode
    return episode


def _close(
    state: OrderState, order: CompiledOrder, key: str, now: float, reason: str, **kw: object
) -> list[Alert]:
    episode = state.episodes.pop(key, None)
    if episode is None or episode.seq < 0:
        return []
    episode.seq += 1
    return [_alert(order, episode, "closed", now, reason=reason, **kw)]  # type: ignore[arg-type]


# ---------------------------------------------------------------- the episode state machine


def count_observation(episode: Episode, t: float, possibly_inside: bool) -> None:
    """What every in-order observation does to an open episode, whatever it decides: its time,
    and since when and how often it has been at least possibly inside (the dwell). The batch
    path does this alone for a fix that changes nothing else (services/core/batch.py)."""
    episode.last_t = t
    if possibly_inside:
        if episode.possible_since is None:
            episode.possible_since = t
        episode.possible_count += 1
    else:
        episode.possible_since = None
        episode.possible_count = 0


def step_episode(
    state: OrderState,
    order: CompiledOrder,
    rules: RuleConfig,
    *,
    key: str,
    rule: str,
    subject_key: str,
    level: int,
    warning_certain: bool,
    has_warning: bool,
    fix: Fix,
    t: float,
    distance_m: float,
    now: float,
) -> list[Alert]:
    """Advance one episode by one in-order observation at `level`."""
    episode = state.episodes.get(key)
    if episode is None:
        if level == CLEAR:
            return []
        episode = open_episode(state, order, key, rule, subject_key, t)
    count_observation(episode, t, level >= POSSIBLE)

    if level == CLEAR:
        if episode.outside_since is None:
            episode.outside_since = t
        if episode.seq < 0 or t - episode.outside_since >= rules.hysteresis_s:
            return _close(state, order, key, now, "clearly outside", fix=fix, distance_m=distance_m)
        return []
    episode.outside_since = None

    severity: str
    certainty: str
    if level == CERTAIN:
        severity, certainty = "breach", "certain"
    elif level == POSSIBLE and (
        episode.possible_count >= rules.dwell_fixes
        or t - (episode.possible_since or t) >= rules.dwell_s
    ):
        severity, certainty = "breach", "possible"
    elif has_warning:
        severity, certainty = "warning", "certain" if warning_certain else "possible"
    else:
        return []  # a possible breach still in its dwell, with no warning buffer to report

    if severity == "breach":
        if episode.breach_since is None:
            episode.breach_since = t
        elif t - episode.breach_since >= rules.critical_after_s:
            severity = "critical"

    new_severity, new_certainty = raise_only(
        episode.severity, episode.certainty, severity, certainty
    )
    if episode.seq >= 0 and (new_severity, new_certainty) == (episode.severity, episode.certainty):
        return []
    status: AlertStatus = "open" if episode.seq < 0 else "updated"
    episode.severity, episode.certainty = new_severity, new_certainty
    episode.seq += 1
    return [_alert(order, episode, status, now, fix=fix, distance_m=distance_m)]


# ---------------------------------------------------------------- rules


def zone_level(zone: CompiledZone, fix: Fix, outlier: bool) -> tuple[int, bool, float]:
    """(level, warning certain, signed distance) of a fix against a zone, the schedule applied."""
    if zone.schedule is not None and not zone.schedule.active(fix.t):
        return CLEAR, False, math.inf
    r, buffer = fix.accuracy_m, zone.warning_buffer_m
    if zone.kind == "presence_obligation":
        distance = zone.shape.signed_distance(fix.lat, fix.lon, math.inf)
        # Being outside is the breach: classify the disc against the zone's complement.
        level = disc_level(-distance, r, buffer)
        warning_certain = -distance + r <= buffer
    else:
        distance = zone.shape.signed_distance(fix.lat, fix.lon, r + buffer)
        level = disc_level(distance, r, buffer)
        warning_certain = distance + r <= buffer
    if outlier and level == CERTAIN:
        level = POSSIBLE
    return level, warning_certain, distance


def contact_level(
    ban: CompiledContactBan, subject: DeviceTrack, protected: DeviceTrack, outlier: bool
) -> tuple[int, bool, float]:
    """Two discs against a minimum distance; both accuracies count."""
    between = fast_distance_m(subject.lat, subject.lon, protected.lat, protected.lon)
    r = subject.accuracy_m + protected.accuracy_m
    edge = between - ban.min_distance_m  # the victim's forbidden disc, as a signed distance
    buffer = ban.warning_distance_m - ban.min_distance_m
    level = disc_level(edge, r, buffer)
    if outlier and level == CERTAIN:
        level = POSSIBLE
    return level, edge + r <= buffer, between


def _contact(
    state: OrderState,
    order: CompiledOrder,
    rules: RuleConfig,
    ban: CompiledContactBan,
    fix: Fix,
    outlier: bool,
    now: float,
) -> list[Alert]:
    if order.subject_device_id is None or ban.protected_device_id is None:
        return []
    subject = state.devices.get(order.subject_device_id)
    protected = state.devices.get(ban.protected_device_id)
    if subject is None or protected is None or subject.last_t is None or protected.last_t is None:
        return []
    if abs(subject.last_t - protected.last_t) > rules.contact_window_s:
        return []
    level, warning_certain, between = contact_level(
        ban, subject, protected, outlier or subject.outlier or protected.outlier
    )
    subject_fix = Fix(
        device_id=order.subject_device_id,
        role="subject",
        person_id=order.subject_person_id,
        t=subject.last_t,
        lat=subject.lat,
        lon=subject.lon,
        accuracy_m=subject.accuracy_m,
    )
    return step_episode(
        state, order, rules,
        key=ban.episode_key, rule="contact_ban", subject_key=ban.protected_person_id,
        level=level, warning_certain=warning_certain,
        has_warning=ban.warning_distance_m > ban.min_distance_m,
        fix=subject_fix, t=max(subject.last_t, protected.last_t), distance_m=between, now=now,
    )  # fmt: skip


def _late_fix(
    state: OrderState, order: CompiledOrder, rules: RuleConfig, fix: Fix, now: float
) -> list[Alert]:
    """A fix older than the device's newest: evidence, never a roll-back of the running state."""
    if fix.role != "subject" or not order.in_force(fix.t):
        return []
    alerts: list[Alert] = []
    for zone in order.zones:
        level, _, distance = zone_level(zone, fix, outlier=False)
        if level != CERTAIN:
            continue  # only a certain breach stands as late evidence on its own
        key = zone.episode_key
        episode = state.episodes.get(key)
        if episode is not None and fix.t >= episode.started_at - rules.hysteresis_s:
            raised = raise_only(episode.severity, episode.certainty, "breach", "certain")
            if episode.seq >= 0 and raised != (episode.severity, episode.certainty):
                episode.severity, episode.certainty = raised
                episode.seq += 1
                alerts.append(
                    _alert(order, episode, "updated", now, fix=fix, distance_m=distance, late=True)
                )
            continue
        window = state.late_windows.get(key)
        if (
            window is not None
            and window[0] - rules.hysteresis_s <= fix.t <= window[1] + rules.hysteresis_s
        ):
            state.late_windows[key] = (min(window[0], fix.t), max(window[1], fix.t))
            continue
        state.late_windows[key] = (fix.t, fix.t)
        late_episode = Episode(
            # Its own id space: a late duplicate of a fix that once opened a running episode
            # must not reuse that episode's id.
            alert_id=alert_id(order.order_id, zone.kind, f"late:{zone.zone_id}", fix.t),
            rule=zone.kind,
            subject_key=zone.zone_id,
            started_at=fix.t,
            seq=0,
            severity="breach",
            certainty="certain",
        )
        alerts.append(
            _alert(order, late_episode, "closed", now, fix=fix, distance_m=distance, late=True,
                   reason="breach seen in a fix that arrived after newer ones")
        )  # fmt: skip
    return alerts


def _battery(
    state: OrderState,
    order: CompiledOrder,
    rules: RuleConfig,
    device_id: str,
    track: DeviceTrack,
    pct: int,
    t: float,
    now: float,
) -> list[Alert]:
    track.battery_pct = pct
    key = f"battery:{device_id}"
    episode = state.episodes.get(key)
    if episode is None and pct < rules.battery_low_pct:
        episode = open_episode(state, order, key, "battery_low", device_id, t,
                               seq=0, severity="warning", certainty="certain")  # fmt: skip
        return [_alert(order, episode, "open", now, fix=track, fix_t=track.last_t,
                       reason=f"battery at {pct} %")]  # fmt: skip
    if episode is not None and pct >= rules.battery_low_pct + rules.battery_recovered_margin_pct:
        return _close(state, order, key, now, f"battery at {pct} %")
    return []


def _signal_key(device_id: str) -> str:
    return f"signal:{device_id}"


def _health(
    state: OrderState,
    order: CompiledOrder,
    rules: RuleConfig,
    event: HealthEvent,
    track: DeviceTrack,
    now: float,
) -> list[Alert]:
    if event.role != "subject" or not order.in_force(event.t):
        return []
    alerts: list[Alert] = []
    if event.battery_pct is not None and event.type != "charging":
        alerts += _battery(
            state, order, rules, event.device_id, track, event.battery_pct, event.t, now
        )
    if event.type in TAMPER_EVENTS:
        key = f"tamper:{event.device_id}"
        episode = state.episodes.get(key)
        if episode is not None and event.t - episode.last_t < rules.hysteresis_s:
            episode.last_t = max(episode.last_t, event.t)
            return alerts  # the same tampering, still going on
        episode = open_episode(
            state, order, key, "tamper", event.device_id, event.t,
            seq=0, severity="critical", certainty="certain", last_t=event.t,
        )  # fmt: skip
        alerts.append(_alert(order, episode, "open", now, fix=track, fix_t=track.last_t,
                             reason=event.type.replace("_", " ")))  # fmt: skip
    elif event.type == "charging" and f"battery:{event.device_id}" in state.episodes:
        alerts += _close(state, order, f"battery:{event.device_id}", now, "charging")
    elif event.type == "power_off" and _signal_key(event.device_id) not in state.episodes:
        episode = open_episode(state, order, _signal_key(event.device_id), "signal_lost",
                               event.device_id, event.t,
                               seq=0, severity="warning", certainty="certain")  # fmt: skip
        alerts.append(_alert(order, episode, "open", now, fix=track, fix_t=track.last_t,
                             reason="the device reported power off"))  # fmt: skip
    return alerts


# ---------------------------------------------------------------- the three entry points


def new_state(order: CompiledOrder, now: float) -> OrderState:
    return OrderState(
        order_id=order.order_id,
        version=order.version,
        watch_since=now,
        zone_fingerprints={z.zone_id: z.fingerprint for z in order.zones},
        ban_fingerprints={b.protected_person_id: b.fingerprint for b in order.contact_bans},
    )


def _end(state: OrderState, order: CompiledOrder, now: float, reason: str) -> list[Alert]:
    alerts: list[Alert] = []
    for key in sorted(state.episodes):
        alerts += _close(state, order, key, now, reason)
    state.ended = True
    return alerts


def apply_order(
    state: OrderState, order: CompiledOrder, now: float, rules: RuleConfig = DEFAULT_RULES
) -> Outcome:
    """Move the state to a new version of its order. A zone or contact ban that changed or went
    away closes its episode; everything unchanged keeps running. Stale versions change nothing."""
    if order.version <= state.version and not (order.revoked and not state.ended):
        return state, []
    alerts: list[Alert] = []
    new_zones = {z.zone_id: z.fingerprint for z in order.zones}
    for zone_id, fingerprint in sorted(state.zone_fingerprints.items()):
        if new_zones.get(zone_id) != fingerprint:
            why = "zone removed" if zone_id not in new_zones else "zone amended"
            alerts += _close(
                state, order, f"zone:{zone_id}", now, f"{why} in version {order.version}"
            )
            state.late_windows.pop(f"zone:{zone_id}", None)
    new_bans = {b.protected_person_id: b.fingerprint for b in order.contact_bans}
    for person, fingerprint in sorted(state.ban_fingerprints.items()):
        if new_bans.get(person) != fingerprint:
            alerts += _close(state, order, f"contact:{person}", now,
                             f"contact ban changed in version {order.version}")  # fmt: skip
    state.zone_fingerprints, state.ban_fingerprints = new_zones, new_bans
    state.version = max(state.version, order.version)
    if order.revoked:
        alerts += _end(state, order, now, "order revoked")
    else:
        state.ended = False
    return state, alerts


def evaluate(
    state: OrderState,
    signal: Signal,
    order: CompiledOrder,
    now: float,
    rules: RuleConfig = DEFAULT_RULES,
) -> Outcome:
    """One fix or device event of one device of the order."""
    check_signal(signal, now, rules)
    alerts: list[Alert] = []
    if order.version != state.version:
        state, alerts = apply_order(state, order, now, rules)
    track = state.devices.get(signal.device_id)
    if track is None:
        track = state.devices[signal.device_id] = DeviceTrack()
    track.last_rx = now

    if isinstance(signal, HealthEvent):
        alerts += _health(state, order, rules, signal, track, now)
        return state, alerts

    fix = signal
    track.last_fix_rx = now
    is_subject = fix.role == "subject"
    if is_subject and _signal_key(fix.device_id) in state.episodes:
        alerts += _close(state, order, _signal_key(fix.device_id), now, "fix received", fix=fix)
    if is_subject and fix.battery_pct is not None and order.in_force(fix.t):
        alerts += _battery(state, order, rules, fix.device_id, track, fix.battery_pct, fix.t, now)

    if track.last_t is not None and fix.t < track.last_t:
        alerts += _late_fix(state, order, rules, fix, now)
        return state, alerts

    record_fix(track, fix, is_outlier(track, fix, rules))
    outlier = track.outlier
    if not order.in_force(fix.t):
        return state, alerts

    if is_subject:
        episodes = state.episodes
        for zone in order.zones:
            level, warning_certain, distance = zone_level(zone, fix, outlier)
            key = zone.episode_key
            if level == CLEAR and key not in episodes:
                continue
            alerts += step_episode(
                state, order, rules,
                key=key, rule=zone.kind, subject_key=zone.zone_id, level=level,
                warning_certain=warning_certain, has_warning=zone.warning_buffer_m > 0,
                fix=fix, t=fix.t, distance_m=distance, now=now,
            )  # fmt: skip
        for ban in order.contact_bans:
            alerts += _contact(state, order, rules, ban, fix, outlier, now)
    else:
        for ban in order.bans_by_protected_device.get(fix.device_id, ()):
            alerts += _contact(state, order, rules, ban, fix, outlier, now)
    return state, alerts


def tick(
    state: OrderState, order: CompiledOrder, now: float, rules: RuleConfig = DEFAULT_RULES
) -> Outcome:
    """Wall-clock timers: signal lost (and its escalation), and the expiry of the order."""
    if state.ended:
        return state, []
    if order.revoked or (order.valid_until is not None and now >= order.valid_until):
        return state, _end(state, order, now, "order revoked" if order.revoked else "order expired")
    device = order.subject_device_id
    if device is None or now < order.valid_from:
        return state, []
    track = state.devices.get(device)
    heard = track.last_fix_rx if track is not None and track.last_fix_rx is not None else None
    dark_for = now - (heard if heard is not None else state.watch_since)
    threshold = rules.signal_lost_after_s
    if dark_for < threshold:
        return state, []
    key = _signal_key(device)
    episode = state.episodes.get(key)
    last_t = track.last_t if track is not None else None
    if episode is None:
        # The moment the device counted as lost on the wall clock. It only moves forward (each
        # fix that closes an episode is heard later than that episode started), so every
        # signal-lost episode of a device gets an id of its own. Being a wall-clock timer it is
        # not replay-deterministic, and need not be: a replay also ticks at other moments.
        started = (
            heard if heard is not None else max(order.valid_from, state.watch_since)
        ) + threshold
        episode = open_episode(state, order, key, "signal_lost", device, started,
                               seq=0, severity="warning", certainty="certain")  # fmt: skip
        return state, [_alert(order, episode, "open", now, fix=track, fix_t=last_t,
                              reason=f"no fix for {dark_for:.0f} s")]  # fmt: skip
    if dark_for >= threshold * rules.signal_lost_escalate_factor and episode.severity == "warning":
        episode.severity = "breach"
        episode.seq += 1
        return state, [_alert(order, episode, "updated", now, fix=track, fix_t=last_t,
                              reason=f"no fix for {dark_for:.0f} s")]  # fmt: skip
    return state, []
