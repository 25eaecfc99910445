"""The compiled reading of a batch's columns (services/core/signal_columns.py) gives what the
signals' own attributes say, for any signal: fixes and device events, ids of any length and
alphabet, a battery level or none, NaN and infinite numbers, and fields of another type than
the struct declares (an int time, a battery level msgpack encodes in more than one byte), which
the compiled pass leaves to the objects."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.model import Fix, HealthEvent, Signal
from services.core.signal_columns import EVENT, FIX, id_hash, read_signals

ids = st.text(min_size=0, max_size=70)  # past 31 bytes a msgpack str has a longer header
roles = st.sampled_from(["subject", "protected_person"])
# Floats of every kind, and ints where a float belongs: msgspec then encodes an int, which the
# compiled pass does not read.
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**40), 2**40)
batteries = st.none() | st.integers(0, 100) | st.integers(101, 2**31)

fixes = st.builds(
    Fix, device_id=ids, role=roles, person_id=ids, t=numbers, lat=numbers, lon=numbers,
    accuracy_m=numbers, battery_pct=batteries,
)  # fmt: skip
events = st.builds(
    HealthEvent, device_id=ids, role=roles, person_id=ids, t=numbers,
    type=st.sampled_from(["strap_tamper", "power_off", "charging", "heartbeat"]),
    battery_pct=batteries,
)  # fmt: skip
pairs = st.lists(st.tuples(ids, st.one_of(fixes, events)), max_size=40)


def _same(read: float, expected: float) -> bool:
    return (math.isnan(read) and math.isnan(expected)) or read == expected


@settings(max_examples=300, deadline=None)
@given(pairs)
def test_every_column_is_what_the_signal_says(items: list[tuple[str, Signal]]) -> None:
    read = read_signals(items, [signal for _, signal in items])
    for k, (order_id, signal) in enumerate(items):
        assert read.order_hash[k] == id_hash(order_id)
        assert read.device_hash[k] == id_hash(signal.device_id)
        assert read.subject[k] == (signal.role == "subject")
        assert _same(read.t[k], float(signal.t))
        battery = math.nan if signal.battery_pct is None else float(signal.battery_pct)
        assert _same(read.battery_pct[k], battery)
        if isinstance(signal, Fix):
            assert read.kind[k] == FIX
            assert _same(read.lat[k], float(signal.lat))
            assert _same(read.lon[k], float(signal.lon))
            assert _same(read.accuracy_m[k], float(signal.accuracy_m))
        else:
            assert read.kind[k] == EVENT
            assert np.isnan([read.lat[k], read.lon[k], read.accuracy_m[k]]).all()


@settings(max_examples=200, deadline=None)
@given(st.lists(ids, min_size=2, max_size=30, unique=True))
def test_ids_hash_apart_and_alike(distinct: list[str]) -> None:
    """Equal ids hash alike whatever the str object; distinct ids apart (a 64-bit hash: a
    collision among a few ids would be a broken hash, not bad luck). Never -1, which marks an
    empty slot."""
    hashes = [id_hash(identifier) for identifier in distinct]
    assert len(set(hashes)) == len(distinct)
    assert -1 not in hashes
    copies = [identifier.encode().decode() for identifier in distinct]
    assert [id_hash(identifier) for identifier in copies] == hashes


def test_a_batch_of_thousands_is_read_whole() -> None:
    """Past 15 pairs the list has a longer msgpack header, past 65,535 a longer one again; a
    long batch is encoded a chunk at a time, and a pair read from its object (an int time,
    every 997th) can be in any chunk."""
    for count in (15, 16, 70_000):
        items: list[tuple[str, Signal]] = [
            (f"BB-{k}", Fix(device_id=f"EB-{k}", role="subject", person_id="P",
                            t=k if k % 997 == 0 else float(k), lat=52.0, lon=5.0,
                            accuracy_m=10.0))
            for k in range(count)
        ]  # fmt: skip
        read = read_signals(items, [signal for _, signal in items])
        assert read.t.tolist() == [float(k) for k in range(count)]
        assert read.order_hash[count - 1] == id_hash(f"BB-{count - 1}")
