"""evaluator: a batch's whole write as one function call (one round trip, one statement)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# A batch of live traffic is a few dozen signals; written as four or five statements in a
# transaction it cost more round trips (and client CPU) than its evaluation. As one function
# call it is one statement: atomic by itself, no BEGIN/COMMIT, and a prepared plan.
# Arrays are parallel columns; empty arrays, never NULL, for "nothing of that kind".
COMMIT_BATCH = """
CREATE FUNCTION evaluator_commit_batch(
    p_group text,
    -- input offsets, compare-and-set; expected NULL: stored for the first time
    p_topics text[], p_partitions int[], p_expected bigint[], p_next bigint[],
    -- orders with a new version: their whole row
    p_new_order_ids text[], p_new_partitions int[], p_new_states bytea[], p_new_events bytea[],
    p_new_delivered bytea[], p_new_tracks bytea[],
    -- a change log row per partition that logs this batch
    p_log_partitions int[], p_log_changes bytea[],
    -- partitions folding this batch, and the full checkpoint of every order their log named
    -- (a NULL state: the stored one stands)
    p_fold_partitions int[], p_fold_order_ids text[], p_fold_order_partitions int[],
    p_fold_states bytea[], p_fold_delivered bytea[], p_fold_tracks bytea[],
    -- the alerts decided (the outbox), and outbox rows acknowledged by Kafka since
    p_alert_order_ids text[], p_alert_ids text[], p_alert_seqs int[], p_alert_payloads bytea[],
    p_published bigint[]
) RETURNS bigint[]  -- the outbox ids of the alerts, in their order
LANGUAGE plpgsql AS $$
DECLARE
    inserted bigint;
    updated bigint;
    ids bigint[];
BEGIN
    -- Offsets first: an evaluator that lost a partition to another writes nothing at all.
    INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)
    SELECT p_group, m.topic, m.partition, m.next
    FROM unnest(p_topics, p_partitions, p_expected, p_next) AS m(topic, partition, expected, next)
    WHERE m.expected IS NULL
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    UPDATE consumer_offsets AS o SET next_offset = m.next, updated_at = now()
    FROM unnest(p_topics, p_partitions, p_expected, p_next) AS m(topic, partition, expected, next)
    WHERE m.expected IS NOT NULL AND o.consumer_group = p_group AND o.topic = m.topic
      AND o.partition = m.partition AND o.next_offset = m.expected;
    GET DIAGNOSTICS updated = ROW_COUNT;
    IF inserted + updated <> cardinality(p_topics) THEN
        RAISE EXCEPTION 'input offsets of % moved by another evaluator', p_group
            USING ERRCODE = 'BWF01';
    END IF;

    INSERT INTO evaluator_state (order_id, partition, state, order_event, delivered, tracks)
    SELECT * FROM unnest(p_new_order_ids, p_new_partitions, p_new_states, p_new_events,
                         p_new_delivered, p_new_tracks)
    ON CONFLICT (order_id) DO UPDATE SET
        partition = excluded.partition, state = excluded.state,
        order_event = excluded.order_event, delivered = excluded.delivered,
        tracks = excluded.tracks, updated_at = now();

    UPDATE evaluator_state AS s
    SET partition = v.partition, state = coalesce(v.state, s.state), delivered = v.delivered,
        tracks = v.tracks, updated_at = now()
    FROM unnest(p_fold_order_ids, p_fold_order_partitions, p_fold_states, p_fold_delivered,
                p_fold_tracks) AS v(order_id, partition, state, delivered, tracks)
    WHERE s.order_id = v.order_id;
    GET DIAGNOSTICS updated = ROW_COUNT;
    IF updated <> cardinality(p_fold_order_ids) THEN
        RAISE EXCEPTION 'a checkpoint without its order version has no stored row'
            USING ERRCODE = 'BWS01';
    END IF;
    DELETE FROM evaluator_changes WHERE partition = ANY(p_fold_partitions);
    INSERT INTO evaluator_changes (partition, changes)
    SELECT * FROM unnest(p_log_partitions, p_log_changes);

    UPDATE alert_outbox SET published_at = now()
    WHERE id = ANY(p_published) AND published_at IS NULL;
    WITH made AS (
        INSERT INTO alert_outbox (order_id, alert_id, seq, payload)
        SELECT a.order_id, a.alert_id, a.seq, a.payload
        FROM unnest(p_alert_order_ids, p_alert_ids, p_alert_seqs, p_alert_payloads)
             WITH ORDINALITY AS a(order_id, alert_id, seq, payload, n)
        ORDER BY a.n
        RETURNING id
    )
    SELECT coalesce(array_agg(id ORDER BY id), '{}') INTO ids FROM made;
    RETURN ids;
END
$$
"""


def upgrade() -> None:
    op.execute(COMMIT_BATCH)


def downgrade() -> None:
    op.execute("DROP FUNCTION evaluator_commit_batch")
