"""faust's Kafka transport, reading `read_committed`.

faust (aiokafka) reads `read_uncommitted` unless the app itself is transactional. `hits` is
written in Kafka transactions by the matcher's runner, so a faust agent reading it the
default way would also see the hits of aborted transactions (a matcher that crashed mid-batch)
and could open an episode on a hit that was never committed. This transport is faust's own
aiokafka transport with one change: its consumer asks the broker for committed records only.
Use it with broker URLs of the scheme `SCHEME`.
"""

from __future__ import annotations

from typing import Any

# isort: off
from facestream.runtime.faust_import import faust  # noqa: F401  (first: faust must not see our argv)
from faust.transport import drivers
from faust.transport.drivers import aiokafka as driver

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


class Transport(driver.Transport):
    Consumer = _CommittedConsumer


drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
