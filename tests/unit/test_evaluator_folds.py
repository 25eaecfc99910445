"""How the evaluator writes each partition's checkpoint. A catch-up batch changes many orders
of a partition, and they go through the change log, folded into evaluator_state on the
partition's turn: a steady stream touches every partition in every batch, and the partitions
take turns, about one a batch, instead of all folding in the same batch (which held that
batch's alerts back). A batch of live traffic changes a few orders, and with nothing logged
they are written straight in, as the fold of that one log row would write them."""

from __future__ import annotations

import random

import msgspec
import pytest
from aiokafka import TopicPartition

from services.breach_evaluator import evaluator, store
from services.breach_evaluator.evaluator import (
    FOLD_EVERY_BATCHES,
    WRITE_THROUGH_MAX,
    HeldPartition,
    PartitionChanges,
)
from services.core.batch import SCALAR_BELOW, Partition
from tests.support.orders import T0, circle, compiled, fix, order_event

PARTITIONS = 12
CATCH_UP = set(range(WRITE_THROUGH_MAX + 1))  # the orders a catch-up-sized batch changes


def _held(number: int, orders: int = WRITE_THROUGH_MAX + 1) -> HeldPartition:
    core = Partition()
    for k in range(orders):
        core.upsert(compiled(order_id=f"BB-{number}-{k}"), T0)
    return HeldPartition(number=number, core=core)


def test_a_steady_stream_folds_one_partition_a_batch() -> None:
    held = [_held(number) for number in range(PARTITIONS)]
    folding_per_batch = []
    folds = dict.fromkeys(range(PARTITIONS), 0)
    for batch in range(1, 1 + 4 * FOLD_EVERY_BATCHES):
        folding = 0
        for partition in held:
            changes = partition.changes(set(CATCH_UP), idle=False, batch=batch)
            if changes.folded:
                assert len(changes.folded) == len(CATCH_UP)
                folding += 1
                folds[partition.number] += 1
            else:
                assert changes.logged is not None
            assert not changes.written
            assert partition.logged_batches < FOLD_EVERY_BATCHES
        folding_per_batch.append(folding)
    assert max(folding_per_batch) == 1
    assert sum(folding_per_batch) == sum(folds.values())
    # every partition still folds once every FOLD_EVERY_BATCHES batches
    assert set(folds.values()) <= {3, 4}, folds


def test_a_partition_that_misses_its_turns_folds_when_its_log_is_full() -> None:
    partition = _held(5)
    logged_at_fold = []
    for batch in range(1, 1 + 6 * FOLD_EVERY_BATCHES):
        if (batch + partition.number) % FOLD_EVERY_BATCHES == 0:
            continue  # no work for it on its turn
        before = partition.logged_batches
        if partition.changes(set(CATCH_UP), idle=False, batch=batch).folded:
            logged_at_fold.append(before)
    assert logged_at_fold, "it never folded"
    assert max(logged_at_fold) == FOLD_EVERY_BATCHES - 1


def test_an_idle_fetch_folds_whatever_is_logged() -> None:
    partition = _held(3)
    assert partition.changes(set(CATCH_UP), idle=False, batch=1).logged is not None
    assert partition.changes(set(), idle=True, batch=2).folded
    assert partition.logged_batches == 0
    assert not partition.changes(set(), idle=True, batch=3).folded  # nothing left to fold


def test_a_partition_is_behind_while_the_broker_holds_records_past_where_it_stands() -> None:
    """An empty fetch in a catch-up is not an idle input: the high watermark of the latest
    fetch says more waits, and the partition does not fold for it."""
    partition = _held(3)
    partition.offsets = {"signals": 500, "orders": 40, "new": None}
    ends = {TopicPartition("signals", 3): 500, TopicPartition("orders", 3): 40}
    assert not partition.behind(_Fetched(ends))
    assert partition.behind(_Fetched({**ends, TopicPartition("orders", 3): 41}))
    assert partition.behind(_Fetched({**ends, TopicPartition("signals", 3): 9_000}))
    assert not partition.behind(_Fetched({**ends, TopicPartition("signals", 0): 9_000}))
    # no fetch answered yet, or nothing stored yet: not known to be behind
    assert not partition.behind(_Fetched({}))
    assert not partition.behind(_Fetched({**ends, TopicPartition("new", 3): 7}))


class _Fetched:
    """The high watermarks a consumer's latest fetches answered."""

    def __init__(self, ends: dict[TopicPartition, int]) -> None:
        self.ends = ends

    def highwater(self, partition: TopicPartition, /) -> int | None:
        return self.ends.get(partition)


def test_a_few_orders_changed_go_straight_in_and_a_log_goes_on_until_its_fold() -> None:
    partition = _held(7)
    few = partition.changes({1, 2}, idle=False, batch=1)
    assert [c.order_id for c in few.written] == ["BB-7-1", "BB-7-2"]
    assert few.logged is None and not few.folded and partition.logged_batches == 0
    assert partition.changes(set(CATCH_UP), idle=False, batch=2).logged is not None
    # once something is logged, a small batch is logged too: the fold must see it after the
    # rows it logged before, and a write of its own would land before that fold
    assert partition.changes({1}, idle=False, batch=3).logged is not None
    assert partition.changes(set(), idle=True, batch=4).folded
    assert partition.changes({1}, idle=False, batch=5).written


# ---------------------------------------------------------------- the same rows either way

_Row = tuple[bytes, bytes, bytes]  # state, delivered, tracks, as evaluator_state holds them


def _store(rows: dict[str, _Row], written: list[store.Checkpoint]) -> None:
    """What the fold's UPDATE does to a row (a None state: the stored one stands)."""
    for c in written:
        rows[c.order_id] = (rows[c.order_id][0] if c.state is None else c.state, c.delivered,
                            c.tracks)  # fmt: skip


def _replay(rows: dict[str, _Row], log: list[bytes]) -> dict[str, _Row]:
    """What a reload reads: the rows with the log replayed over them (store.load_checkpoints)."""
    read = dict(rows)
    for blob in log:
        for order_id, state, delivered, tracks in store._replayed(blob):
            read[order_id] = (read[order_id][0] if state is None else state, delivered, tracks)
    return read


def _run(seed: int, scalar_below: int) -> tuple[dict[str, _Row], list[PartitionChanges]]:
    """Live traffic over a few orders, each with a location ban it now and then walks into; the
    rows a reload reads after the last batch, and what each batch wrote."""
    rng = random.Random(seed)
    core = Partition(scalar_below=scalar_below)
    orders = 12
    for k in range(orders):
        core.upsert(compiled(order_id=f"BB-{k}", subject_device=f"EB-{k}",
                             zones=[circle("home", 1000.0 * k, 0.0, 150.0)]), T0)  # fmt: skip
    held = HeldPartition(number=0, core=core)
    rows: dict[str, _Row] = {}
    log: list[bytes] = []
    everything = held.changes(set(range(orders)), idle=True, batch=0)  # the rows to start from
    _store(rows, everything.written or everything.folded)
    wrote = []
    t = T0
    for batch in range(1, 60):
        t += 5.0
        items = []
        for k in rng.sample(range(orders), rng.randint(1, 4)):
            # mostly quiet, far from the zone; sometimes inside it (an episode, a new state)
            x = 1000.0 * k + (rng.uniform(-50, 50) if rng.random() < 0.3 else 600.0)
            items.append((f"BB-{k}", fix(x, rng.uniform(-50, 50), t, device=f"EB-{k}")))
        outcome = core.evaluate(core.batch(items), t)
        changes = held.changes(set(outcome.touched), idle=False, batch=batch)
        wrote.append(changes)
        if changes.logged is not None:
            log.append(changes.logged)
        if changes.folded:
            log.clear()
        _store(rows, changes.written or changes.folded)
    return _replay(rows, log), wrote


# scalar_below 1: every batch decided in bulk, where a quiet fix moves only its order's tracks;
# the default: batches this small go the scalar path, which restates every order it touches.
@pytest.mark.parametrize("scalar_below", [1, SCALAR_BELOW])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_written_straight_in_a_reload_reads_what_the_log_would_have_given(
    seed: int, scalar_below: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight, wrote = _run(seed, scalar_below)
    assert all(c.logged is None and not c.folded for c in wrote)
    written = [c for changes in wrote for c in changes.written]
    assert any(c.state is not None for c in written)
    if scalar_below == 1:  # a state only where it changed: quiet fixes moved only the tracks
        assert any(c.state is None for c in written)
    monkeypatch.setattr(evaluator, "WRITE_THROUGH_MAX", 0)  # every batch through the log
    logged, wrote = _run(seed, scalar_below)
    assert any(c.logged is not None for c in wrote) and any(c.folded for c in wrote)
    assert straight == logged


def test_a_partition_reloaded_in_mid_log_folds_the_states_its_log_carried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fold stores only the states its log rows carried (and those this batch changed); the
    # others' stored states stand. After a reload the partition still has to know which.
    events = {
        f"BB-{k}": msgspec.json.encode(order_event(
            order_id=f"BB-{k}", subject_device=f"EB-{k}",
            zones=[circle("home", 1000.0 * k, 0.0, 150.0)],
        ))
        for k in range(12)
    }  # fmt: skip
    core = Partition()
    for raw in events.values():
        core.upsert(evaluator.compile_order(raw), T0)
    held = HeldPartition(number=0, core=core)
    rows: dict[str, _Row] = {}
    _store(rows, held.changes(set(range(len(events))), idle=True, batch=0).written)
    assert len(rows) == len(events)
    monkeypatch.setattr(evaluator, "WRITE_THROUGH_MAX", 0)  # every batch through the log
    rng, t, log = random.Random(5), T0, []
    for batch in range(1, FOLD_EVERY_BATCHES // 2):
        t += 5.0
        items = []
        for k in rng.sample(range(len(events)), 4):
            x = 1000.0 * k + (rng.uniform(-50, 50) if rng.random() < 0.3 else 600.0)
            items.append((f"BB-{k}", fix(x, rng.uniform(-50, 50), t, device=f"EB-{k}")))
        outcome = core.evaluate(core.batch(items), t)
        changes = held.changes(set(outcome.touched), idle=False, batch=batch)
        assert changes.logged is not None and not changes.folded
        log.append(changes.logged)
    assert any(state is not None for blob in log for _, state, _, _ in store._replayed(blob))
    before = _replay(rows, log)

    stored = {
        order_id: store.StoredCheckpoint(order_id, state, events[order_id], delivered, tracks)
        for order_id, (state, delivered, tracks) in rows.items()
    }
    loaded = store.replay_log(stored, log, 0)
    reloaded = HeldPartition(number=0, core=Partition(), logged_batches=loaded.logged_batches)
    for checkpoint in loaded.checkpoints:
        reloaded.take_back(checkpoint, t, logged=checkpoint.order_id in loaded.in_log)
    fold = reloaded.changes(set(), idle=True, batch=FOLD_EVERY_BATCHES // 2)
    assert fold.folded
    _store(rows, fold.folded)
    assert _replay(rows, []) == before
