"""The alert dispatcher's pure decisions: merging messages, handling and report state
machines, escalation deadlines, referrals, webhook retry spacing and signatures."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import wire
from services.alert_dispatcher import policy
from services.alert_dispatcher.policy import Refused

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SEVERITIES = ["warning", "breach", "critical"]


def message(seq: int, severity: str, status: str = "updated") -> wire.Alert:
    return wire.Alert(
        alert_id="a-1", seq=seq, order_id="BB-1", rule="location_ban", severity=severity,  # type: ignore[arg-type]
        certainty="certain", status=status, episode_started_at=T0,  # type: ignore[arg-type]
        detected_at=T0 + timedelta(seconds=seq), region="noord", probation_officer_id="po-1",
        zone_id="home",
    )  # fmt: skip


# A core episode: severity only rises with seq.
episodes = st.lists(st.sampled_from(SEVERITIES), min_size=1, max_size=8).map(
    lambda picks: [message(n, s) for n, s in enumerate(sorted(picks, key=SEVERITIES.index))]
)


@given(episodes, st.data())
def test_any_redelivery_order_ends_at_the_newest_message(
    episode: list[wire.Alert], data: st.DataObject
) -> None:
    """Oracle: whatever the relay repeats and in whatever order the messages come, the record
    ends as the highest seq says, with the highest severity of the episode."""
    deliveries = data.draw(
        st.lists(st.sampled_from(episode), min_size=1, max_size=20).map(lambda d: [*d, episode[-1]])
    )
    record: dict[str, Any] | None = None
    for n, m in enumerate(deliveries):
        record = policy.merged(record, m, T0 + timedelta(seconds=n))
    assert record is not None
    assert record["last_seq"] == episode[-1].seq
    assert record["severity"] == episode[-1].severity
    assert record["handling"] == "new"


@given(episodes)
def test_severity_never_falls_and_breach_since_is_set_once(episode: list[wire.Alert]) -> None:
    record: dict[str, Any] | None = None
    breach_since = None
    for n, m in enumerate(episode):
        before = None if record is None else record["severity"]
        record = policy.merged(record, m, T0 + timedelta(seconds=n))
        if before is not None:
            assert policy.SEVERITY_RANK[record["severity"]] >= policy.SEVERITY_RANK[before]
        if breach_since is None:
            breach_since = record["breach_since"]
        else:
            assert record["breach_since"] == breach_since  # the first breach starts the clock
    assert record is not None
    reached = any(m.severity != "warning" for m in episode)
    assert (record["breach_since"] is not None) == reached


def test_a_replayed_seq_changes_nothing_not_even_the_handling() -> None:
    first = policy.merged(None, message(0, "breach", "open"), T0)
    handled = {**first, "handling": "acknowledged", "acknowledged_by": "op-1"}
    assert policy.merged(handled, message(0, "breach", "open"), T0) is handled
    closed = policy.merged(handled, message(1, "breach", "closed"), T0)
    assert (closed["handling"], closed["acknowledged_by"]) == ("acknowledged", "op-1")
    assert closed["closed_at"] == message(1, "breach").detected_at


HANDLING = {  # brute force: the table the state machine must follow
    ("new", "acknowledge"): "acknowledged", ("new", "assign"): "acknowledged",
    ("new", "resolve"): "resolved", ("acknowledged", "acknowledge"): None,
    ("acknowledged", "assign"): "acknowledged", ("acknowledged", "resolve"): "resolved",
}  # fmt: skip


@pytest.mark.parametrize(("handling", "action"),
                         list(itertools.product(["new", "acknowledged", "resolved"],
                                                ["acknowledge", "assign", "resolve"])))  # fmt: skip
def test_handling_follows_its_table(handling: str, action: Any) -> None:
    if handling == "resolved":
        with pytest.raises(Refused):
            policy.after_action(handling, action)
    else:
        assert policy.after_action(handling, action) == HANDLING[(handling, action)]


def test_a_report_moves_only_forward_and_closed_is_final() -> None:
    allowed = {("received", "assessed"), ("received", "closed"), ("assessed", "forwarded"),
               ("assessed", "closed"), ("forwarded", "closed")}  # fmt: skip
    statuses = ["received", "assessed", "forwarded", "closed"]
    for current, wanted in itertools.product(statuses, statuses):
        if (current, wanted) in allowed:
            assert policy.report_transition(current, wanted) == wanted
        else:
            with pytest.raises(Refused) as refused:
                policy.report_transition(current, wanted)
            assert refused.value.field == "status"


def alert_row(**changes: Any) -> dict[str, Any]:
    row = {"handling": "new", "escalated_at": None, "breach_since": T0, "risk_level": "medium"}
    return row | changes


@given(st.floats(min_value=0, max_value=600), st.sampled_from(["low", "medium", "high"]))
def test_escalation_is_due_exactly_after_its_risk_dependent_wait(waited: float, risk: str) -> None:
    rules = policy.EscalationPolicy(after_s=60, after_high_risk_s=30)
    wait = 30 if risk == "high" else 60
    now = T0 + timedelta(seconds=waited)
    assert rules.due(alert_row(risk_level=risk), now) == (waited >= wait)
    assert not rules.due(alert_row(risk_level=risk, handling="acknowledged"), now)
    assert not rules.due(alert_row(risk_level=risk, escalated_at=T0), now)
    assert not rules.due(alert_row(risk_level=risk, breach_since=None), now)


def test_escalation_raises_a_breach_and_keeps_a_critical() -> None:
    assert [policy.escalated_severity(s) for s in SEVERITIES] == ["warning", "critical", "critical"]


@given(st.lists(st.floats(min_value=0, max_value=20 * 86400), max_size=8))
def test_referral_opens_at_three_breaches_within_seven_days(ages_s: list[float]) -> None:
    rules = policy.ReferralPolicy()
    now = T0 + timedelta(days=30)
    times = [now - timedelta(seconds=age) for age in ages_s]
    recent = sum(1 for age in ages_s if age <= 7 * 86400)
    assert rules.opens(times, now) == (recent >= 3)


def test_only_conduct_breaches_count_towards_a_referral() -> None:
    rules = policy.ReferralPolicy()
    assert rules.counts("contact_ban", "breach") and rules.counts("area_ban", "critical")
    assert not rules.counts("contact_ban", "warning")
    assert not rules.counts("tamper", "critical") and not rules.counts("signal_lost", "breach")


@given(st.integers(min_value=0, max_value=200), st.floats(min_value=0, max_value=1))
def test_retry_delays_stay_within_base_and_cap(attempts: int, unit: float) -> None:
    retry = policy.RetryPolicy(base_s=2, cap_s=600)
    delay = retry.next_delay_s(attempts, unit)
    assert 1.0 <= delay <= min(600, 2 * 2**attempts)


def test_retries_keep_going_for_a_day_then_give_up() -> None:
    retry = policy.RetryPolicy(base_s=2, cap_s=600, give_up_after_s=86400)
    elapsed, attempts = 0.0, 0
    while not retry.gives_up(T0, T0 + timedelta(seconds=elapsed)):
        elapsed += retry.next_delay_s(attempts, 0.5)
        attempts += 1
    assert elapsed >= 86400
    assert 100 < attempts < 400  # about one every 5 minutes once backed off, not a flood


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=2**40))
def test_a_signature_fits_its_body_timestamp_and_secret_only(body: bytes, stamp: int) -> None:
    signed = policy.signature("secret-one-secret-one", stamp, body)
    assert signed.startswith("sha256=")
    assert policy.signature_valid("secret-one-secret-one", stamp, body, signed)
    assert not policy.signature_valid("secret-two-secret-two", stamp, body, signed)
    assert not policy.signature_valid("secret-one-secret-one", stamp + 1, body, signed)
    assert not policy.signature_valid("secret-one-secret-one", stamp, body + b"x", signed)
