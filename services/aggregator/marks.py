"""Apply marks: how a running aggregator notices a Redis that went back in time, and why one
article's calls in a batch cannot leave a gap.

For every hash slot s and partition p, field p of `rx:mark:{tag_s}` (a key in slot s, see
`shared/tallies.py`) holds "count:writer": how many apply calls Redis executed on the
articles of slot s and partition p, and the id of the round trip that made the last one.
Every apply call names the mark it expects and the one it leaves, and writes nothing when
Redis holds another (`shared/lua/apply_batch.lua`). `ApplyMarks` keeps, per partition and
slot, the mark this applier knows Redis reached (from a reply, or read and adopted):

- the calls of one round trip on the same slot and partition form a chain: each expects the
  mark the call before it leaves (the first, the known one), so when one is refused (OOM,
  BUSY, NOSCRIPT, any error) the rest of its chain is refused too, and no chunk of an
  article applies past one that did not. A new writer id per round trip keeps a stray call
  of another round trip (or another writer's) from passing for the call before. The retry
  resumes from the last applied call;
- a refusal that finds a lower count than the known one (or the same count by another
  writer) means Redis lost calls it had confirmed: it went back in time (a failover to a
  lagging replica, a restart from an older snapshot, one master of a cluster failing over).
  No later call can land on that slot, so no newer fence can hide the loss:
  `RedisRolledBack` makes the member replay;
- a refusal that finds a higher count: another writer (a zombie member, a new owner after a
  rebalance, or a call of ours whose reply was lost) moved it; adopt it and retry, the
  fences skip what was applied;
- a lost connection leaves the chains it cut uncertain: before their next call their marks
  are read again, and one behind the known mark is a rollback.

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
    mark_text,
    parse_apply_reply,
    parse_mark,
    run_pipelined,
)
from shared.tallies import SLOTS, mark_key

# The calls that check one mark: those of one partition on one slot, as one int (no object
# to allocate per call on the hot path).
Chain = int
SLOT_BITS = SLOTS.bit_length() - 1
assert 1 << SLOT_BITS == SLOTS


def chain_of(partition: int, slot: int) -> Chain:
    """The chain of a partition's calls on a slot."""
    return partition << SLOT_BITS | slot


def _split(chain: Chain) -> tuple[int, int]:
    return chain >> SLOT_BITS, chain & (SLOTS - 1)


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
        # Per partition, per slot: the count and the writer id of the known mark.
        self._counts: dict[int, array[int]] = {}
        self._writers: dict[int, list[str]] = {}
        self._uncertain: set[Chain] = set()

    @property
    def partitions(self) -> list[int]:
        """The partitions whose marks are known."""
        return sorted(self._counts)

    async def adopt(self, partitions: Iterable[int]) -> None:
        """Read every slot's mark of `partitions` and take them as known (on assignment,
        and when a replay starts)."""
        read = await self._read_partitions(sorted(set(partitions)))
        for partition, (counts, writers) in read.items():
            self._counts[partition], self._writers[partition] = counts, writers
        self._uncertain = {c for c in self._uncertain if c >> SLOT_BITS not in read}

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the marks of partitions given up (their next owner reads its own)."""
        for partition in partitions:
            self._counts.pop(partition, None)
            self._writers.pop(partition, None)
        self._uncertain = {c for c in self._uncertain if c >> SLOT_BITS in self._counts}

    async def behind(self, partitions: Iterable[int] | None = None) -> dict[int, list[int]]:
        """The slots whose mark in Redis is behind the known one, per partition (default:
        every known partition). Marks found ahead are adopted (another writer's)."""
        known = self._counts.keys()
        read = await self._read_partitions(
            sorted(known if partitions is None else set(partitions) & known)
        )
        found: dict[int, list[int]] = {}
        for partition, (counts, writers) in read.items():
            if partition not in self._counts:
                continue  # given up meanwhile
            if counts == self._counts[partition] and writers == self._writers[partition]:
                # Nothing moved (the usual answer): no slot-by-slot look.
                self._uncertain = {c for c in self._uncertain if c >> SLOT_BITS != partition}
                continue
            for slot, (count, writer) in enumerate(zip(counts, writers, strict=True)):
                chain = chain_of(partition, slot)
                if self._lost(chain, count, writer):
                    found.setdefault(partition, []).append(slot)
                else:
                    self._set(chain, count, writer)
                    self._uncertain.discard(chain)
        return found

    async def prepare(self, chains: Iterable[Chain]) -> None:
        """Before a round trip on `chains`: read the marks of partitions not known yet, and
        again those left uncertain. Raises RedisRolledBack when one lost a confirmed call."""
        chains = set(chains)
        unknown = {chain >> SLOT_BITS for chain in chains} - self._counts.keys()
        if unknown:
            await self.adopt(unknown)
        doubtful = sorted(chains & self._uncertain)
        if not doubtful:
            return
        lost: dict[int, list[int]] = {}
        for chain, (count, writer) in zip(doubtful, await self._read_chains(doubtful), strict=True):
            if self._lost(chain, count, writer):
                partition, slot = _split(chain)
                lost.setdefault(partition, []).append(slot)
            else:
                self._set(chain, count, writer)
                self._uncertain.discard(chain)
        if lost:
            raise RedisRolledBack(lost)

    def expectations(self, chains: Sequence[Chain], writer: str) -> tuple[list[str], list[str]]:
        """For the calls of a round trip by `writer`: the mark each expects (the known one
        for the first call of its chain, the one the call before leaves for the next ones),
        and the mark each leaves."""
        position: dict[Chain, int] = {}
        expected, leaves = [], []
        for chain in chains:
            i = position.get(chain, 0)
            position[chain] = i + 1
            partition, slot = chain >> SLOT_BITS, chain & (SLOTS - 1)
            count = self._counts[partition][slot] + i
            before = self._writers[partition][slot] if i == 0 else writer
            expected.append(mark_text(count, before))
            leaves.append(f"{count + 1}:{writer}")
        return expected, leaves

    def record(
        self, chains: Sequence[Chain], outcomes: Sequence[Any], writer: str
    ) -> tuple[list[ApplyReply | None], Exception | None]:
        """Fold the outcomes of a round trip by `writer` into the known marks.

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
            partition, slot = chain >> SLOT_BITS, chain & (SLOTS - 1)
            if isinstance(outcome, (bytes, str)):
                reply = parse_apply_reply(outcome)
                if isinstance(reply, ApplyReply):
                    self._counts[partition][slot] += 1
                    self._writers[partition][slot] = writer
                    replies[i] = reply
                    continue
                if self._lost(chain, reply.count, reply.writer):
                    lost.setdefault(partition, []).append(slot)
                else:
                    self._set(chain, reply.count, reply.writer)
                    moved.add(chain)
                stopped.add(chain)
            elif outcome is None:
                stopped.add(chain)
            elif isinstance(outcome, ResponseError):
                refused = refused or outcome
                stopped.add(chain)
            else:  # a lost connection: the call may or may not have applied
                unknown = unknown or outcome
                self._uncertain.add(chain)
                stopped.add(chain)
        error: Exception | None = None
        if lost:
            error = RedisRolledBack(lost)
        elif unknown is not None:
            error = unknown
        elif refused is not None:
            error = refused
        elif moved:
            partitions = sorted({chain >> SLOT_BITS for chain in moved})
            error = MarksMoved(
                f"apply marks of {len(moved)} slot(s) of partitions {partitions} were moved "
                "by another writer; retrying from their new marks"
            )
        return replies, error

    def _lost(self, chain: Chain, count: int, writer: str) -> bool:
        """True when Redis's mark (`count`, `writer`) misses a call the known mark counts:
        a lower count, or the same count reached by another writer."""
        partition, slot = _split(chain)
        known = self._counts[partition][slot]
        return count < known or (count == known and writer != self._writers[partition][slot])

    def _set(self, chain: Chain, count: int, writer: str) -> None:
        partition, slot = _split(chain)
        self._counts[partition][slot] = count
        self._writers[partition][slot] = writer

    async def _read_partitions(
        self, partitions: list[int]
    ) -> dict[int, tuple[array[int], list[str]]]:
        if not partitions:
            return {}
        rows = await self._hmget([(mark_key(slot), partitions) for slot in range(SLOTS)])
        read = {p: (array("q", [0]) * SLOTS, [""] * SLOTS) for p in partitions}
        for slot, row in enumerate(rows):
            for partition, raw in zip(partitions, row, strict=True):
                if raw:
                    counts, writers = read[partition]
                    counts[slot], writers[slot] = parse_mark(raw)
        return read

    async def _read_chains(self, chains: list[Chain]) -> list[tuple[int, str]]:
        requests = [(mark_key(slot), [partition]) for partition, slot in map(_split, chains)]
        rows = await self._hmget(requests)
        return [parse_mark(row[0]) for row in rows]

    async def _hmget(self, requests: list[tuple[str, list[int]]]) -> list[list[Any]]:
        """One HMGET per (key, fields), in one round trip (on Redis Cluster, one per node)."""
        if isinstance(self.redis, RedisCluster):
            pipe = self.redis.pipeline()
            for key, fields in requests:
                pipe.hmget(key, fields)
            return list(await pipe.execute())
        commands: list[tuple[str | int, ...]] = [("HMGET", key, *f) for key, f in requests]
        return await run_pipelined(self.redis, commands)
