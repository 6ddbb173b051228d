"""How a service logs: lines for a terminal, or one JSON object a line for a log pipeline.

In a cluster the logs of hundreds of replicas end up in one store (Loki, Elasticsearch), where a
line is found by its fields, not by grepping its text: `--log-format json` (the chart's default)
writes each record as an object with its time (UTC), level, logger, message and the service,
plus the camera, stage or partition where the code that logs knows them (passed as `extra=`).
python-json-logger does the encoding: it escapes what a message holds (a camera URL, a broker's
error text) so that one record is always one line of valid JSON.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

CONTEXT_FIELDS = ("camera", "stage", "topic", "partition", "offset", "partitions")
"""Fields a log call may pass in `extra=`; in JSON they become the record's own fields. A message's
own place is topic/partition/offset; a batch that spans partitions gives `partitions` (a list)."""


class ContextLog(logging.LoggerAdapter[logging.Logger]):
    """A logger that adds fixed fields (a runner's stage) to every record and keeps the fields a
    call gives in `extra=`: Python 3.11's LoggerAdapter replaces a call's extra with its own, so a
    dead letter's partition would have been dropped silently."""

    def process(
        self, msg: object, kwargs: MutableMapping[str, Any]
    ) -> tuple[object, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


class ServiceField(logging.Filter):
    """Stamps every record with the service that wrote it."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        return True


def json_formatter() -> logging.Formatter:
    """`time` is the record's UTC time to the microsecond (ISO 8601), whatever the host's zone."""
    return JsonFormatter(
        "{levelname}{name}{message}{service}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        json_ensure_ascii=False,
    )


def setup_logging(level: str, log_format: LogFormat = "text", service: str = "facestream") -> None:
    """Log to stderr at `level`, replacing whatever logging was set up before (the CLI's)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ServiceField(service))
    handler.setFormatter(json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
