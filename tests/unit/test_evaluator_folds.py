"""When the evaluator folds each partition's change log into evaluator_state: a steady stream
touches every partition in every batch, and the partitions take turns, about one a batch,
instead of all folding in the same batch (which held that batch's alerts back)."""

from __future__ import annotations

from services.breach_evaluator.evaluator import FOLD_EVERY_BATCHES, HeldPartition
from services.core.batch import Partition
from tests.support.orders import T0, compiled

PARTITIONS = 12


def _held(number: int) -> HeldPartition:
    core = Partition()
    core.upsert(compiled(order_id=f"BB-{number}"), T0)
    return HeldPartition(number=number, core=core)


def test_a_steady_stream_folds_one_partition_a_batch() -> None:
    held = [_held(number) for number in range(PARTITIONS)]
    folding_per_batch = []
    folds = dict.fromkeys(range(PARTITIONS), 0)
    for batch in range(1, 1 + 4 * FOLD_EVERY_BATCHES):
        folding = 0
        for partition in held:
            changes = partition.changes({0}, idle=False, batch=batch)
            if changes.folded:
                assert [c.order_id for c in changes.folded] == [f"BB-{partition.number}"]
                folding += 1
                folds[partition.number] += 1
            else:
                assert changes.logged is not None
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
        if partition.changes({0}, idle=False, batch=batch).folded:
            logged_at_fold.append(before)
    assert logged_at_fold, "it never folded"
    assert max(logged_at_fold) == FOLD_EVERY_BATCHES - 1


def test_an_idle_fetch_folds_whatever_is_logged() -> None:
    partition = _held(3)
    assert partition.changes({0}, idle=False, batch=1).logged is not None
    assert partition.changes(set(), idle=True, batch=2).folded
    assert partition.logged_batches == 0
    assert not partition.changes(set(), idle=True, batch=3).folded  # nothing left to fold
