"""The audit log: one append-only, hash-chained row for every read of sensitive data.

Each row's hash covers its own fields and the previous row's hash, so changing or removing a row
breaks the chain from there on; `verify` walks it. Rows are chained in id order under a
transaction-scoped advisory lock, written in the same transaction as the read they record: a
read whose audit row cannot be written fails with it. A trigger refuses UPDATE, DELETE and
TRUNCATE (migration 0002). Not covered: removing the newest rows, which a chain alone cannot show.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.adapters.auth import Actor
from services.adapters.tables import audit_log

GENESIS = "0" * 64
_CHAIN_LOCK = 0x6277_6175_6469_74  # "bwaudit": one writer of the chain at a time


def row_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(
        {**fields, "at": fields["at"].astimezone(UTC).isoformat()}, sort_keys=True,
        separators=(",", ":"), ensure_ascii=False,
    )  # fmt: skip
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


_HASHED = ("id", "at", "actor", "role", "region", "action", "object", "reason", "emergency")


async def record(
    session: AsyncSession,
    caller: Actor,
    *,
    action: str,
    object: str,
    reason: str = "",
    emergency: bool = False,
) -> int:
    """Append one row in the caller's transaction; returns its id."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
    prev = await session.scalar(select(audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1))
    row_id = await session.scalar(select(func.nextval("audit_log_id_seq")))
    assert row_id is not None
    fields: dict[str, Any] = {
        "id": int(row_id), "at": datetime.now(UTC), "actor": caller.sub, "role": caller.role,
        "region": caller.region, "action": action, "object": object[:256], "reason": reason,
        "emergency": emergency,
    }  # fmt: skip
    prev_hash = prev or GENESIS
    await session.execute(
        audit_log.insert().values(**fields, prev_hash=prev_hash, hash=row_hash(prev_hash, fields))
    )
    return int(row_id)


@dataclass(frozen=True)
class ChainReport:
    rows: int
    broken_at: int | None  # id of the first row that does not fit the chain
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None


async def verify(sessions: async_sessionmaker[AsyncSession], batch: int = 5000) -> ChainReport:
    prev_hash, count, after = GENESIS, 0, 0
    async with sessions() as session:
        while True:
            rows = (
                await session.execute(
                    select(audit_log).where(audit_log.c.id > after).order_by(audit_log.c.id)
                    .limit(batch)
                )
            ).mappings().all()  # fmt: skip
            if not rows:
                return ChainReport(count, None)
            for row in rows:
                fields = {name: row[name] for name in _HASHED}
                if row["prev_hash"] != prev_hash:
                    return ChainReport(count, row["id"], "a row before it was changed or removed")
                if row_hash(prev_hash, fields) != row["hash"]:
                    return ChainReport(count, row["id"], "its content was changed")
                prev_hash = row["hash"]
                count += 1
                after = row["id"]
