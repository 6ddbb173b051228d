"""One exception tree for the whole package, so callers can catch by meaning, not by origin."""

from __future__ import annotations


class FacestreamError(Exception):
    """Root of every error facestream raises on purpose."""


class ConfigError(FacestreamError):
    """A setting, CLI argument or camera config is wrong; the message says which and why."""


class InvalidMessage(FacestreamError):
    """A message cannot be processed: it goes to the stage's dead-letter topic with `reason`.

    `reason` is a short machine-readable token (for the DLQ header and the metric label);
    the message text is the human explanation.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DeliveryError(FacestreamError):
    """The producer could not confirm delivery; the consumer must not commit."""


class RangeUnread(DeliveryError):
    """A direct read of an offset range ran out of time before reaching the range's end (Kafka
    away or slow): what it got is not all there is, and must not be taken for "nothing more there"."""


class GalleryUnavailable(FacestreamError):
    """The gallery (Milvus) cannot be reached; the matcher stops consuming until it returns."""


class GalleryLocked(FacestreamError):
    """A Milvus Lite gallery directory is owned by another process."""


class EnrollmentRefused(FacestreamError):
    """A photo cannot be enrolled (no usable face, ambiguous, unauthorised); nothing was stored."""


class ModelError(FacestreamError):
    """A model file is missing, fails its checksum, or does not have the expected layout."""


class CameraError(FacestreamError):
    """A camera source cannot be opened or read; the sampler retries it with backoff."""


class AuditError(FacestreamError):
    """The audit log cannot be written (refused content, damaged tail, no key): the action must not go on."""


class PermissionDenied(FacestreamError):
    """The actor lacks the role an action needs (roles are assigned in the gallery directory)."""


class NotAuthorised(FacestreamError):
    """No active, in-scope authorisation covers the action (unknown, revoked, expired or not yet valid)."""
