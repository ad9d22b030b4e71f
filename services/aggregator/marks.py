"""Apply marks: how a running aggregator notices a Redis that went back in time, and why one
article's calls in a batch cannot leave a gap.

For every hash slot s and partition p, field p of `rx:mark:{tag_s}` (a key in slot s, see
`shared/tallies.py`) holds "count:writer": how many apply calls Redis executed on the
articles of slot s and partition p, and which round trip made the last one. Every apply call
names the mark it expects and writes nothing when Redis holds another
(`shared/lua/apply_batch.lua`). `ApplyMarks` keeps, per partition and slot, the count this
applier knows Redis reached (from a reply, or read and adopted), and from it:

- the calls of one round trip on the same slot and partition form a chain: the first
  expects the known count, each next one exactly the mark the call before it writes. When
  one is refused (OOM, BUSY, NOSCRIPT, any error) the rest of its chain is refused too, so
  no chunk of an article applies past one that did not; the retry resumes from the last
  applied call;
- a refusal that finds a count at or below the known one means Redis lost calls it had
  confirmed: it went back in time (a failover to a lagging replica, a restart from an older
  snapshot, one master of a cluster failing over). No later call can land on that slot, so
  no newer fence can hide the loss: `RedisRolledBack` makes the member replay;
- a refusal that finds a higher count: another writer (a zombie member, a new owner after a
  rebalance, or a call of ours whose reply was lost) moved it; adopt that count and retry,
  the fences skip what was applied;
- a lost connection leaves the chains it cut uncertain: before their next call their marks
  are read again, and a count below the known one is a rollback.

Slots that the batches do not touch are checked by `behind`: when the identity of a Redis
master changes (`watch.py`) and when the member gives partitions up.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from services.aggregator.scripts import (
    ApplyReply,
    MarkRefusal,
    parse_apply_reply,
    parse_mark,
    run_pipelined,
)
from shared.tallies import SLOTS, mark_key

Chain = tuple[int, int]  # (partition, slot): the calls that check one mark


class RedisRolledBack(Exception):
    """Redis holds fewer apply calls on some slots than it confirmed: it went back in time.

    Nothing was applied on those slots since (their marks refuse every call), so replaying
    the partitions from the start restores what was lost; the fences skip what survived.
    """

    def __init__(self, behind: Mapping[int, Iterable[int]]) -> None:
        self.behind = {p: sorted(slots) for p, slots in sorted(behind.items())}
        super().__init__(
            "apply marks behind the confirmed ones: "
            + ", ".join(f"partition {p}: {len(s)} slot(s)" for p, s in self.behind.items())
        )

    def fields(self) -> dict[str, object]:
        """The slots found behind, as log fields (a few slots per partition)."""
        return {
            "partitions_behind": list(self.behind),
            "slots_behind": {str(p): slots[:10] for p, slots in self.behind.items()},
            "slots_behind_total": sum(len(s) for s in self.behind.values()),
        }


class MarksMoved(ResponseError):
    """Apply calls were refused because another writer moved their slots' marks; the new
    marks are adopted and the calls retried."""


class ApplyMarks:
    """The apply mark this applier knows Redis reached, per partition and slot."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._known: dict[int, array[int]] = {}
        self._uncertain: set[Chain] = set()

    @property
    def partitions(self) -> list[int]:
        """The partitions whose marks are known."""
        return sorted(self._known)

    def count(self, partition: int, slot: int) -> int | None:
        """The known count of one mark (None when its partition is not known)."""
        known = self._known.get(partition)
        return None if known is None else known[slot]

    async def adopt(self, partitions: Iterable[int]) -> None:
        """Read every slot's mark of `partitions` and take them as known (on assignment,
        and when a replay starts)."""
        read = await self._read_partitions(sorted(set(partitions)))
        self._known.update(read)
        self._uncertain = {c for c in self._uncertain if c[0] not in read}

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the marks of partitions given up (their next owner reads its own)."""
        for partition in partitions:
            self._known.pop(partition, None)
        self._uncertain = {c for c in self._uncertain if c[0] in self._known}

    async def behind(self, partitions: Iterable[int] | None = None) -> dict[int, list[int]]:
        """The slots whose mark Redis holds below the known one, per partition (default:
        every known partition). Marks found at or above the known ones are adopted."""
        wanted = self._known.keys() if partitions is None else set(partitions) & self._known.keys()
        read = await self._read_partitions(sorted(wanted))
        found: dict[int, list[int]] = {}
        for partition, current in read.items():
            known = self._known[partition]
            for slot, (now, was) in enumerate(zip(current, known, strict=True)):
                if now < was:
                    found.setdefault(partition, []).append(slot)
                    continue
                known[slot] = now
                self._uncertain.discard((partition, slot))
        return found

    async def prepare(self, chains: Iterable[Chain]) -> None:
        """Before a round trip on `chains`: read the marks of partitions not known yet, and
        again those left uncertain. Raises RedisRolledBack when one lost a confirmed call."""
        chains = set(chains)
        unknown = {partition for partition, _ in chains} - self._known.keys()
        if unknown:
            await self.adopt(unknown)
        doubtful = sorted(chains & self._uncertain)
        if not doubtful:
            return
        current = await self._read_chains(doubtful)
        lost: dict[int, list[int]] = {}
        for (partition, slot), now in zip(doubtful, current, strict=True):
            if now < self._known[partition][slot]:
                lost.setdefault(partition, []).append(slot)
            else:
                self._known[partition][slot] = now
                self._uncertain.discard((partition, slot))
        if lost:
            raise RedisRolledBack(lost)

    def expectations(self, chains: Sequence[Chain], writer: str) -> list[str]:
        """The mark each call expects: the known count for the first call of its chain
        (whoever wrote it), and exactly the mark of the call before for the next ones."""
        position: dict[Chain, int] = {}
        expected = []
        for chain in chains:
            i = position.get(chain, 0)
            position[chain] = i + 1
            count = self._known[chain[0]][chain[1]]
            expected.append(f"{count + i}:{writer}" if i else str(count))
        return expected

    def record(
        self, chains: Sequence[Chain], outcomes: Sequence[Any]
    ) -> tuple[list[ApplyReply | None], Exception | None]:
        """Fold the outcomes of a round trip into the known marks.

        Returns the reply of each call that applied (None for the others) and, when some did
        not, the error to raise: RedisRolledBack, else the lost connection, else the first
        error reply, else MarksMoved.
        """
        replies: list[ApplyReply | None] = [None] * len(chains)
        stopped: set[Chain] = set()
        lost: dict[int, list[int]] = {}
        moved: set[Chain] = set()
        unknown: Exception | None = None
        refused: ResponseError | None = None
        for i, (chain, outcome) in enumerate(zip(chains, outcomes, strict=True)):
            if chain in stopped:
                continue  # refused or not sent: the call before it on its chain did not apply
            stopped.add(chain)
            partition, slot = chain
            if outcome is None:
                continue
            if isinstance(outcome, ResponseError):
                refused = refused or outcome
                continue
            if isinstance(outcome, Exception):
                unknown = unknown or outcome
                self._uncertain.add(chain)
                continue
            reply = parse_apply_reply(outcome)
            if isinstance(reply, MarkRefusal):
                # At or below: a call Redis confirmed is gone (at: replaced by another
                # writer's after Redis lost it).
                if reply.mark <= self._known[partition][slot]:
                    lost.setdefault(partition, []).append(slot)
                else:
                    self._known[partition][slot] = reply.mark
                    moved.add(chain)
                continue
            self._known[partition][slot] = reply.mark
            replies[i] = reply
            stopped.discard(chain)
        error: Exception | None = None
        if lost:
            error = RedisRolledBack(lost)
        elif unknown is not None:
            error = unknown
        elif refused is not None:
            error = refused
        elif moved:
            partitions = sorted({p for p, _ in moved})
            error = MarksMoved(
                f"apply marks of {len(moved)} slot(s) of partitions {partitions} were moved "
                "by another writer; retrying from their new marks"
            )
        return replies, error

    async def _read_partitions(self, partitions: list[int]) -> dict[int, array[int]]:
        if not partitions:
            return {}
        rows = await self._hmget([(mark_key(slot), partitions) for slot in range(SLOTS)])
        read = {p: array("q", [0]) * SLOTS for p in partitions}
        for slot, row in enumerate(rows):
            for partition, raw in zip(partitions, row, strict=True):
                if raw is not None:
                    read[partition][slot] = parse_mark(raw)
        return read

    async def _read_chains(self, chains: list[Chain]) -> list[int]:
        rows = await self._hmget([(mark_key(slot), [partition]) for partition, slot in chains])
        return [parse_mark(row[0]) for row in rows]

    async def _hmget(self, requests: list[tuple[str, list[int]]]) -> list[list[Any]]:
        """One HMGET per (key, fields), in one round trip (on Redis Cluster, one per node)."""
        if isinstance(self.redis, RedisCluster):
            pipe = self.redis.pipeline()
            for key, fields in requests:
                pipe.hmget(key, fields)
            return list(await pipe.execute())
        return await run_pipelined(
            self.redis, [("HMGET", key, *fields) for key, fields in requests]
        )
