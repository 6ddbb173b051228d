"""faust's Kafka transport, reading `read_committed`; the one module that reaches into faust's and
aiokafka's private API (each use says why, and a test fails if the library changes underneath).

faust (aiokafka) reads `read_uncommitted` unless the app itself is transactional. `hits` is
written in Kafka transactions by the matcher's runner, so a faust agent reading it the
default way would also see the hits of aborted transactions (a matcher that crashed mid-batch)
and could open an episode on a hit that was never committed. This transport is faust's own
aiokafka transport with three changes: its consumer asks the broker for committed records only;
it records the gaps those leave (transaction markers) without the delivered message's own offset,
so that its commits keep up; and it lets the agent acknowledge hits faust skipped, which the agent
read and applied itself. Use it with broker URLs of the scheme `SCHEME`.
"""

from __future__ import annotations

from typing import Any

# isort: off
from facestream.runtime.faust_import import faust  # noqa: F401  (first: faust must not see our argv)
from faust.transport import drivers
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

# isort: on

SCHEME = "fskafka"


class _CommittedConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its fetcher when the consumer starts (it has not yet).
        consumer._isolation_level = "read_committed"
        return consumer


class _CommittedConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _CommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        """faust calls this with `offset_to` = the offset of the message it is delivering and
        records the gap up to and including it; that message is acked too, and the repeated
        offset ends the run of consecutive acked offsets faust commits up to. On a transactional
        input every transaction's marker is such a gap, so each commit moved past one transaction
        and the group's lag grew while hits kept coming (faust-streaming/faust#606,
        robinhood/faust#625; tests/runtime/test_episodes_commits.py). The gap is what lies
        before the delivered message."""
        await super()._add_gap(tp, offset_from, offset_to - 1)

    async def acknowledge_undelivered(self, tp: Any, start: int, end: int) -> None:
        """Count offsets [start, end) as acknowledged (episodes_steps.Acknowledge): recorded as a
        gap, which faust's commit adds to the acknowledged offsets once it has acknowledged one
        after them (faust's own `_add_gap`, without this class's shift: here `end` is not a
        delivered message's offset)."""
        await super()._add_gap(tp, start, end - 1)


class Transport(driver.Transport):
    Consumer = _CommittedConsumer


async def commit_undelivered(consumer: Any, tp: Any, offset: int) -> None:
    """Commit `tp` at `offset`, past records faust never delivered (transaction markers).

    faust's public `Consumer.commit` commits only offsets it delivered and acknowledged, and the
    point here is to pass markers it never delivers. So this calls the private
    `Consumer._commit_offsets`, what faust's own commit ends in (it drops revoked partitions and
    commits through the transaction manager when there is one); tests/runtime/test_episodes_steps.py
    fails if faust changes its name or parameters."""
    await consumer._commit_offsets({tp: offset})


async def acknowledge_undelivered(consumer: Any, topic: str, partition: int, start: int, end: int) -> None:
    """Offsets [start, end) of the partition are done though faust never delivered them: let its
    commits pass them. `consumer` is the app's consumer, of this transport (any other is refused)."""
    if not isinstance(consumer, _CommittedConsumer):
        raise TypeError(f"not a consumer of the {SCHEME} transport: {type(consumer).__name__}")
    await consumer.acknowledge_undelivered(TP(topic, partition), start, end)


drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
