"""The aggregator's one retry policy: classify the error, back off with jitter, count it by
dependency, and log it with the step and the batch (topic, partitions, offsets).

A step is retried until it succeeds, never skipped: the batch's positions are written only
after its applies, and the fences make a repeated apply harmless. Only shutdown ends the
retries (`BatchAbandoned`).

An error that retrying cannot fix goes to the step's own handler when it has one: the dead
letters (`deadletter.py`), which can send a record in a smaller form or, as a last resort,
skip its copy (an invalid record is never applied, so no count depends on it). The other
steps carry counts, fences, positions or correctives: skipping any of them would break
exactness, so they are retried, and their errors logged at error level for an operator
(only a misconfiguration or a bug can cause one: a refused authorisation, a deleted topic).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeVar

from aiokafka.errors import KafkaError, KafkaTimeoutError
from redis.exceptions import ClusterError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.aggregator import metrics
from shared.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class Dependency(StrEnum):
    """What a step waits on; the label of the retries counter."""

    REDIS = "redis"
    KAFKA = "kafka"


@dataclass(frozen=True, slots=True)
class Step:
    """A step of the aggregator that the policy retries, and the dependency it calls."""

    name: str
    dependency: Dependency


SCRIPT_LOAD: Final = Step("script_load", Dependency.REDIS)
EPOCH: Final = Step("epoch", Dependency.REDIS)
POSITION: Final = Step("position", Dependency.REDIS)
DEAD_LETTER: Final = Step("dead_letter", Dependency.KAFKA)
APPLY: Final = Step("apply", Dependency.REDIS)
CORRECTIVE: Final = Step("corrective", Dependency.KAFKA)
FINISH: Final = Step("finish", Dependency.REDIS)
FORGET: Final = Step("forget", Dependency.REDIS)
MARKS: Final = Step("marks", Dependency.REDIS)


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What a retry or failure names besides the step: the topic, partitions and offsets."""

    topic: str
    partitions: tuple[int, ...] = ()
    offsets: str = ""  # "partition:first..last" per partition, space-separated

    @classmethod
    def of_ranges(cls, topic: str, ranges: Mapping[int, tuple[int, int]]) -> BatchContext:
        """The context of a batch holding offsets first..last (inclusive) per partition."""
        partitions = tuple(sorted(ranges))
        offsets = " ".join(f"{p}:{ranges[p][0]}..{ranges[p][1]}" for p in partitions)
        return cls(topic, partitions, offsets)

    def fields(self) -> dict[str, object]:
        """The context as log fields."""
        fields: dict[str, object] = {"topic": self.topic, "partitions": list(self.partitions)}
        if self.offsets:
            fields["offsets"] = self.offsets
        return fields


class ErrorKind(StrEnum):
    """How an error of Redis or Kafka is classified."""

    # The dependency is unreachable or busy (a connection refused, a timeout, aiokafka's
    # retriable errors): back off and try again.
    UNAVAILABLE = "unavailable"
    # Redis answered with an error (OOM, BUSY, NOSCRIPT, READONLY...): retried too, since
    # each clears once Redis recovers (memory freed, script done, scripts reloaded).
    RESPONSE = "response"
    # Retrying cannot help (aiokafka's `retriable` is False, e.g. MessageSizeTooLargeError).
    NOT_RETRIABLE = "not_retriable"

    @property
    def retriable(self) -> bool:
        """False when trying the same step again cannot succeed."""
        return self is not ErrorKind.NOT_RETRIABLE


def classify(exc: BaseException) -> ErrorKind:
    """The kind of a Redis, Kafka or network error."""
    if isinstance(exc, KafkaError):
        # aiokafka marks a request timeout as not retriable (it does not retry it itself),
        # but for the aggregator it is Kafka being unavailable, like a refused connection.
        if exc.retriable or isinstance(exc, KafkaTimeoutError):
            return ErrorKind.UNAVAILABLE
        return ErrorKind.NOT_RETRIABLE
    if isinstance(exc, ResponseError):
        return ErrorKind.RESPONSE
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | ClusterError | OSError):
        return ErrorKind.UNAVAILABLE
    return ErrorKind.NOT_RETRIABLE


def error_fields(exc: BaseException) -> dict[str, str]:
    """The error as log fields: its type and its message."""
    # Not repr: redis-py's leaves the message out ("network:ConnectionError").
    return {"error_type": type(exc).__name__, "error": str(exc)}


class BatchAbandoned(Exception):
    """Shutdown was requested while a batch waited on Redis or Kafka.

    Nothing after the failed step was recorded (no position, no commit), so the batch is
    read again by whoever owns the partition next; the fences make that safe.
    """

    def __init__(self, step: Step, context: BatchContext) -> None:
        super().__init__(step.name)
        self.step = step
        self.context = context

    def log(self) -> None:
        """Log the abandoned batch, once, where the member gives it up."""
        log.info("batch_abandoned_for_shutdown", step=self.step.name, **self.context.fields())


class RetryPolicy:
    """Retries a step until it succeeds, never skipping ahead; gives up only on `stop`.

    Delays double from `first_delay_s` to `max_delay_s`, each drawn between half and all
    of its ceiling, so members that failed together do not all come back together.
    """

    def __init__(
        self, stop: asyncio.Event, *, first_delay_s: float = 0.05, max_delay_s: float = 2.0
    ) -> None:
        self.stop = stop
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the `attempt`-th failure (0-based) of a step."""
        ceiling = min(self.first_delay_s * 2**attempt, self.max_delay_s)
        return random.uniform(ceiling / 2, ceiling)

    async def run(
        self,
        op: Callable[[], Awaitable[T]],
        step: Step,
        context: BatchContext,
        *,
        on_not_retriable: Callable[[BaseException], None] | None = None,
    ) -> T:
        """Await `op()` until it succeeds; raise BatchAbandoned when stopped meanwhile.

        With `on_not_retriable`, an error retrying cannot fix is handed to it and `op` runs
        again at once: the handler must change what `op` does (a smaller record, nothing
        left to send), so that the same error cannot come back forever.
        """
        attempt = 0
        while True:
            try:
                return await op()
            except (RedisError, KafkaError, OSError) as exc:
                if on_not_retriable is not None and not classify(exc).retriable:
                    on_not_retriable(exc)
                    continue
                delay = self.delay(attempt)
                self._record(exc, step, context, delay)
            if self.stop.is_set():
                raise BatchAbandoned(step, context)
            await asyncio.sleep(delay)
            attempt += 1

    @staticmethod
    def _record(exc: BaseException, step: Step, context: BatchContext, delay: float) -> None:
        kind = classify(exc)
        metrics.RETRIES.labels(step.dependency.value).inc()
        fields = {
            "step": step.name,
            "dependency": step.dependency.value,
            **error_fields(exc),
            "error_kind": kind.value,
            "retriable": kind.retriable,
            "retry_in_s": round(delay, 3),
            **context.fields(),
        }
        if kind.retriable:
            log.warning("retry", **fields)
        else:
            # A step without a handler for it cannot be skipped (see the module docstring):
            # retried like the others, logged as an error for an operator to fix.
            log.error("retry", **fields)
