"""Which 503 a failed publish gets: `kafka_unavailable` only when the event never reached
the producer (a certain no), `publish_timeout` once it had (it may have been written). The
producer is a stand-in whose failure is chosen; the real producer's failures are driven
against a real broker in test_durability.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, LeaderNotAvailableError

from services.ingest.config import IngestSettings
from services.ingest.publisher import Publisher
from shared.events import ReactionEvent
from shared.http import ApiError


class FailingProducer:
    """Fails each send as told: at the handover (`send` raises) or after it (the ack)."""

    def __init__(self, at_send: bool) -> None:
        self.at_send = at_send
        self._sender = SimpleNamespace(sender_task=None)
        self._txn_manager = None

    async def send(self, *_: Any, **__: Any) -> asyncio.Future[Any]:
        if self.at_send:
            raise KafkaConnectionError("no connection to the partition's leader")
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # What aiokafka does to a batch left without a leader past its timeout, after it
        # retried an attempt whose answer it lost.
        ack.set_exception(LeaderNotAvailableError())
        return ack


@pytest.mark.parametrize(
    ("at_send", "code"), [(True, "kafka_unavailable"), (False, "publish_timeout")]
)
async def test_an_error_after_the_handover_is_no_certain_no(at_send: bool, code: str) -> None:
    publisher = Publisher(IngestSettings(partitions=2))
    publisher.producer, publisher.generation = FailingProducer(at_send), 1
    event = ReactionEvent.new("set", "a1", "a.reader", "like", None)
    with pytest.raises(ApiError) as refused:
        await publisher.publish(event)
    assert (refused.value.status, refused.value.code) == (503, code)
