"""Step 1's way out for invalid records: the dead-letter topic, whatever the record's size.

A dead letter is the record (key, value, headers) plus headers giving the reason and the
source (`reason`, `detail`, `source_topic`, `source_partition`, `source_offset`). One that
would be bigger than the bound (`REACTIONS_DLQ_MAX_RECORD_BYTES`, key and headers counted)
is stored truncated: its value cut to what fits, its key to 1 KiB, its original headers
kept only while they fit in 16 KiB, with `truncated: true`, `original_size` and
`original_sha256` (of the original value). A record near Kafka's size limit therefore
never becomes a dead letter over it.

Errors go through the retry policy (`retry.py`): a retriable one (Kafka unavailable) backs
off and tries the same letter again; one that retrying cannot fix (the dead-letter topic
refuses the record: its size, a policy) is handled here, in `DeadLetters._refused`, once per
form: the letter is sent again without its value (headers and a key of 1 KiB at most), and
if even that is refused it is logged (`dead_letter_failed`, with topic, partition and
offset), counted in `reactions_aggregator_dead_letter_failures_total` and skipped. Either
way the partition moves on: an invalid record is never applied, so only its copy in the
dead-letter topic can be lost, never a count.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from services.aggregator import metrics
from services.aggregator.retry import DEAD_LETTER, BatchContext, RetryPolicy, error_fields
from shared.events import InvalidEvent
from shared.logs import get_logger

log = get_logger(__name__)

# Far below the producer's max_request_size and the broker's message.max.bytes (1 MiB by
# default), with room for the record's own overhead.
DEFAULT_MAX_RECORD_BYTES: Final = 256 * 1024
# What a truncated letter keeps of the record's key, and of its headers.
KEY_LIMIT: Final = 1024
HEADERS_LIMIT: Final = 16 * 1024

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class LetterRecord:
    """What goes to the dead-letter topic for one invalid record."""

    key: bytes | None
    value: bytes | None
    headers: Headers

    def size(self) -> int:
        """Bytes of key, value and headers (what the bound counts)."""
        return (
            len(self.key or b"")
            + len(self.value or b"")
            + sum(len(name.encode()) + len(value) for name, value in self.headers)
        )


def _source_headers(record: ConsumerRecord, reason: InvalidEvent) -> Headers:
    return [
        ("reason", reason.reason.encode()),
        ("detail", reason.detail[:1000].encode()),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    ]


def _original_headers(record: ConsumerRecord) -> Headers:
    value = record.value or b""
    return [
        ("truncated", b"true"),
        ("original_size", str(len(value)).encode()),
        ("original_sha256", hashlib.sha256(value).hexdigest().encode()),
    ]


def full_letter(record: ConsumerRecord, reason: InvalidEvent, max_bytes: int) -> LetterRecord:
    """The record with its reason and source; truncated to `max_bytes` when bigger."""
    own = list(record.headers or ())
    whole = LetterRecord(record.key, record.value, [*own, *_source_headers(record, reason)])
    if whole.size() <= max_bytes:
        return whole
    kept: Headers = []
    room = HEADERS_LIMIT
    for name, value in own:
        room -= len(name.encode()) + len(value)
        if room < 0:
            break
        kept.append((name, value))
    headers = [*kept, *_source_headers(record, reason), *_original_headers(record)]
    key = None if record.key is None else record.key[:KEY_LIMIT]
    without_value = LetterRecord(key, None, headers).size()
    value = (record.value or b"")[: max(0, max_bytes - without_value)]
    return LetterRecord(key, value, headers)


def minimal_letter(record: ConsumerRecord, reason: InvalidEvent) -> LetterRecord:
    """No value: the key (cut to 1 KiB; empty when none, as a record needs a key or a value),
    the reason, the source, and the original value's size and digest."""
    key = (record.key or b"")[:KEY_LIMIT]
    return LetterRecord(key, None, [*_source_headers(record, reason), *_original_headers(record)])


@dataclass(slots=True)
class _Letter:
    """One invalid record on its way to the dead-letter topic."""

    source: ConsumerRecord
    reason: InvalidEvent
    record: LetterRecord
    minimal: bool = False
    given_up: bool = False
    delivery: asyncio.Future[Any] | None = None

    @property
    def context(self) -> BatchContext:
        p, o = self.source.partition, self.source.offset
        return BatchContext(self.source.topic, (p,), f"{p}:{o}..{o}")

    def fields(self) -> dict[str, object]:
        return {
            "topic": self.source.topic,
            "partition": self.source.partition,
            "offset": self.source.offset,
            "reason": self.reason.reason,
        }


class DeadLetters:
    """Sends a batch's invalid records to the dead-letter topic; returns once each is stored
    (or, refused in every form, skipped)."""

    def __init__(
        self,
        producer: Any,
        topic: str,
        retry: RetryPolicy,
        *,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.retry = retry
        self.max_record_bytes = max_record_bytes

    async def send(self, dead: list[tuple[ConsumerRecord, InvalidEvent]]) -> None:
        """Send every letter; each is retried on its own, so none is sent twice by a retry."""
        letters = []
        for record, reason in dead:
            letter = _Letter(record, reason, full_letter(record, reason, self.max_record_bytes))
            truncated = letter.record.value != record.value or letter.record.key != record.key
            log.warning(
                "dead_letter",
                **letter.fields(),
                detail=reason.detail[:200],
                size=len(record.value or b""),
                truncated=truncated,
            )
            letters.append(letter)
        # All handed to the producer first, so they travel together; a failure to hand one
        # over shows again when it is delivered below, where the policy classifies it.
        for letter in letters:
            try:
                letter.delivery = await self._enqueue(letter)
            except KafkaError:
                letter.delivery = None
        for letter in letters:
            await self.retry.run(
                partial(self._deliver, letter),
                DEAD_LETTER,
                letter.context,
                on_not_retriable=partial(self._refused, letter),
            )

    async def _enqueue(self, letter: _Letter) -> asyncio.Future[Any]:
        record = letter.record
        future: asyncio.Future[Any] = await self.producer.send(
            self.topic, record.value, key=record.key, headers=record.headers
        )
        return future

    async def _deliver(self, letter: _Letter) -> None:
        """Wait for the letter's acknowledgement, sending it (again) when it is not in flight."""
        if letter.given_up:
            return
        delivery, letter.delivery = letter.delivery, None
        if delivery is None:
            delivery = await self._enqueue(letter)
        await delivery

    def _refused(self, letter: _Letter, exc: BaseException) -> None:
        """The one place for errors retrying cannot fix: the next form, or give up."""
        if not letter.minimal:
            letter.minimal = True
            letter.record = minimal_letter(letter.source, letter.reason)
            log.warning("dead_letter_minimal", **letter.fields(), **error_fields(exc))
            return
        letter.given_up = True
        metrics.DEAD_LETTER_FAILURES.inc()
        log.error("dead_letter_failed", **letter.fields(), **error_fields(exc))
