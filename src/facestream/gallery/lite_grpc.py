"""Milvus Lite's in-process gRPC server logs, through grpc, an RPC it does not implement.

Creating a collection (the gallery's, or the rewrite journal's) makes pymilvus ask for one; the
record is a traceback at ERROR that says nothing wrong happened. Both callers drop it the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


class DropUnimplementedRpc(logging.Filter):
    """Drops grpc's record of an RPC handler that raised NotImplementedError (how a generated
    servicer answers a method its server does not implement); passes every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info is not None and isinstance(record.exc_info[1], NotImplementedError))


@contextmanager
def quiet_unimplemented_rpcs(*, enabled: bool) -> Iterator[None]:
    """While creating a collection on Milvus Lite. pymilvus creates its index and then asks the
    server for a timestamp (AllocTimestamp) to wait on it; Lite's in-process gRPC server does not
    implement that RPC, grpc logs the handler's NotImplementedError with a traceback at ERROR, and
    pymilvus carries on without the timestamp. Only that record is dropped, and only during the
    call: grpc's logging stays as it was for everything else in the process."""
    if not enabled:
        yield
        return
    server_log = logging.getLogger("grpc._server")
    quiet = DropUnimplementedRpc()
    server_log.addFilter(quiet)
    try:
        yield
    finally:
        server_log.removeFilter(quiet)
