"""Frozen, validated settings: one model per concern.

Every field has a default and a description, is read from an environment variable
(`FACESTREAM_<CONCERN>_<FIELD>`, the concern said once: FACESTREAM_GALLERY, not
FACESTREAM_GALLERY_GALLERY; facestream.env_names; shown in each `--help`), and can be overridden
by the matching command-line flag. Secrets are `SecretStr`, so they never print in logs or reprs.
Field names are unique across concerns because each becomes a flag of the same name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from facestream.camera.read_pacing import DEFAULT_READ_BATCH_S
from facestream.env_names import EnvNamedSettings
from facestream.vision.models import default_model_dir

M = TypeVar("M", bound=BaseSettings)


class Settings:
    """The settings models one process was given, each parsed once.

    `settings[DetectorSettings]` is typed as a DetectorSettings: a dict keyed by model type could
    only say Any, and a typo'd attribute on it went unnoticed until run time. Asking for a model
    the process was not given is an error that names it; `get` is for the optional ones (the
    matcher's audit topic when there is Kafka).
    """

    def __init__(self, *models: BaseSettings) -> None:
        self._models: dict[type[BaseSettings], BaseSettings] = {type(m): m for m in models}

    def __getitem__(self, model: type[M]) -> M:
        found = self.get(model)
        if found is None:
            raise KeyError(f"{model.__name__} is not among the settings this process was given")
        return found

    def get(self, model: type[M]) -> M | None:
        found = self._models.get(model)
        return found if isinstance(found, model) else None


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="forbid", protected_namespaces=())


class KafkaSettings(EnvNamedSettings):
    """How services reach the Kafka cluster."""

    model_config = _config("FACESTREAM_KAFKA_")

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port...]"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol uses SASL"
    )
    sasl_username: str | None = Field(None, description="SASL username (this service's principal)")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password; prefer the environment variable over the flag"
    )
    ssl_ca_location: Path | None = Field(None, description="CA certificate (PEM) to verify brokers")
    ssl_certificate_location: Path | None = Field(None, description="client certificate (PEM) for mTLS")
    ssl_key_location: Path | None = Field(None, description="client key (PEM) for mTLS")
    topic_prefix: str = Field("", description="prefix for every topic name, e.g. 'city1.'")
    client_id: str = Field("facestream", description="client.id reported to the brokers")
    librdkafka_debug: str = Field(
        "",
        description="librdkafka debug contexts (e.g. 'cgrp,fetch'), written to stderr; for diagnosis only",
    )
    metadata_recovery_strategy: Literal["none", "rebootstrap"] = Field(
        "none",
        description="librdkafka metadata.recovery.strategy when every known broker is down: none keeps the "
        "brokers the client learned and reconnects to them by name; rebootstrap (librdkafka's default) "
        "forgets them, which left transaction calls blocked for good after a broker restart",
    )


class RuntimeSettings(EnvNamedSettings):
    """How a service's processing loop behaves: batching, health, shutdown, dead letters."""

    model_config = _config("FACESTREAM_")

    metrics_port: int = Field(
        9400, ge=0, le=65535, description="port of /metrics, /healthz, /readyz; 0 picks a free one"
    )
    liveness_file: Path | None = Field(
        None, description="file touched on every poll; a probe fails when it grows stale"
    )
    batch_size: int = Field(32, ge=1, le=10_000, description="most messages taken per poll")
    batch_timeout_ms: int = Field(
        50, ge=0, le=60_000, description="longest wait to fill a batch (the embedder's batching window)"
    )
    shutdown_grace_s: float = Field(
        25.0, gt=0, description="on SIGTERM, finish in-flight work and commit within this time"
    )
    max_invalid_ratio: float = Field(
        0.5,
        ge=0,
        le=1,
        description="stop when more than this share of the last 1000 messages went to the DLQ",
    )
    group_id: str | None = Field(None, description="consumer group; default <topic_prefix>facestream-<stage>")
    replica_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._\-]{1,200}$",
        description="this replica's stable name (e.g. the pod name): makes it a static group member "
        "and names its transactional producer, so a restart takes over at once; default none",
    )
    liveness_timeout_s: float = Field(
        60.0, gt=0, description="/healthz fails when the processing loop has not polled for this long"
    )
    input_stall_timeout_s: float = Field(
        120.0,
        ge=0,
        description="rejoin with a new Kafka client when the input has had messages waiting and none "
        "delivered for this long (longer than a batch and an upstream transaction take); 0: never",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    log_format: Literal["text", "json"] = Field(
        "text", description="text: a line for a terminal; json: one object a line, for a log pipeline"
    )


class ModelSettings(EnvNamedSettings):
    """Where model files live and what runs them."""

    model_config = _config("FACESTREAM_MODEL_")

    model_dir: Path = Field(default_factory=default_model_dir, description="verified model cache")
    execution_provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="onnxruntime provider; auto uses CUDA when onnxruntime-gpu sees a GPU"
    )
    inference_threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads")


class SamplerSettings(EnvNamedSettings):
    """How cameras are sampled into `frames`."""

    model_config = _config("FACESTREAM_SAMPLER_")

    fps: float = Field(2.0, gt=0, le=30, description="default frames per second per camera")
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of published frames")
    max_frame_width: int = Field(
        1920, ge=160, le=8192, description="frames wider than this are downscaled before encoding"
    )
    reconnect_initial_s: float = Field(1.0, gt=0, description="first reconnect delay of a failed camera")
    reconnect_max_s: float = Field(60.0, gt=0, description="reconnect delays double up to this")
    stall_timeout_s: float = Field(
        10.0, gt=0, description="a live camera with no new frame for this long is reconnected"
    )
    live_read_batch_s: float = Field(
        DEFAULT_READ_BATCH_S,
        ge=0,
        le=2,
        description="a live camera read by PyAV, once it has caught up with the stream, is read again "
        "this much later, a burst of packets per wake-up rather than one per frame (reading live then costs "
        "half to a quarter as much; a sample arrives up to this much later); 0: every packet as it comes",
    )
    realtime_files: bool = Field(
        False, description="pace video files at their own speed, as a live camera would be"
    )
    loop_files: bool = Field(False, description="restart video files at their end (soak tests)")
    resume_lookback_records: int = Field(
        5000,
        ge=0,
        description="a file camera a sampler starts goes on after its last frame found among this many "
        "newest records of its `frames` partition (published under the same config); 0: files play "
        "from their start",
    )


class DetectorSettings(EnvNamedSettings):
    """Face detection, landmarks and the quality gates."""

    model_config = _config("FACESTREAM_DETECTOR_")

    detector_type: Literal["ultraface"] = Field("ultraface", description="detector backend")
    detector_model: str = Field(
        "ultraface-rfb320", description="built-in model name, or a path to an ONNX file"
    )
    detector_model_sha256: str | None = Field(None, description="sha256 of a detector model file")
    landmarker_type: Literal["pfld68"] = Field("pfld68", description="landmark backend")
    landmarker_model: str = Field("pfld68-64", description="built-in model name, or an ONNX path")
    landmarker_model_sha256: str | None = Field(None, description="sha256 of a landmark model file")
    det_score_threshold: float = Field(0.65, ge=0, le=1, description="lowest detector score kept")
    nms_iou: float = Field(0.4, gt=0, le=1, description="IoU above which overlapping boxes merge")
    min_face_px: float = Field(32.0, ge=8, description="shorter side of the face box, at least")
    min_sharpness: float = Field(40.0, ge=0, description="Laplacian variance of the aligned crop, at least")
    max_abs_yaw: float = Field(0.6, gt=0, description="nose offset over eye distance, at most")
    max_frame_pixels: int = Field(
        40_000_000, ge=1, description="frames larger than this go to the DLQ undecoded"
    )
    thumbnail_px: int = Field(128, ge=32, le=512, description="height of the reviewer's face thumbnail")
    max_future_skew_s: float = Field(
        300.0,
        ge=0,
        allow_inf_nan=False,
        description="frames dated more than this ahead of the detector's clock go to the DLQ "
        "(reason future_timestamp); past times are accepted (replayed files); 0: no limit",
    )
    track_faces: bool = Field(
        True,
        description="track faces per camera and forward a track's face only when it is new, "
        "clearly better or due again (fewer embeddings); off: every face of every frame",
    )
    track_refresh_s: float = Field(
        10.0, gt=0, allow_inf_nan=False, description="a track forwards a face again after this long"
    )
    track_max_gap_s: float = Field(
        2.0, gt=0, allow_inf_nan=False, description="a track unseen for this long ends"
    )
    track_better_by: float = Field(
        1.3,
        ge=1,
        allow_inf_nan=False,
        description="a face this many times better than its track's best is forwarded",
    )


class EmbedderSettings(EnvNamedSettings):
    """The face embedding model. Batching uses the runtime's batch size and window."""

    model_config = _config("FACESTREAM_EMBEDDER_")

    embedder_type: Literal["arcface"] = Field("arcface", description="embedder backend")
    embedder_model: str = Field(
        "mobilefacenet-arcface-512", description="built-in model name, or a path to an ONNX file"
    )
    embedder_model_sha256: str | None = Field(None, description="sha256 of an embedder model file")
    channel_order: Literal["bgr", "rgb"] = Field("bgr", description="channel order the model expects")


class GallerySettings(EnvNamedSettings):
    """Where the watchlist gallery lives, and what a photo must be to enroll."""

    model_config = _config("FACESTREAM_GALLERY_")

    gallery: str = Field(
        "./gallery", description="gallery directory (Milvus Lite), or http(s)://host:19530 of a server"
    )
    gallery_token: SecretStr | None = Field(None, description="token for a Milvus server")
    collection: str = Field("watchlist", description="Milvus collection name")
    index_type: Literal["FLAT", "HNSW", "IVF_FLAT"] = Field(
        "FLAT", description="vector index; FLAT is exact, HNSW/IVF trade recall for speed at scale"
    )
    # HNSW defaults measured at 1M entries on a Milvus 2.3.5 server (docs/benchmarks.md, "Gallery"):
    # M=32/efConstruction=100 needed a lower search ef than 16/200 for the same recall at about the
    # same build CPU, and ef 128 missed no genuine query where 64 missed 1.2%.
    hnsw_m: int = Field(
        32, ge=4, le=64, description="HNSW: graph links per vector (set when the index is built)"
    )
    hnsw_ef_construction: int = Field(
        100, ge=8, le=512, description="HNSW: candidate list while building (set when the index is built)"
    )
    search_ef: int = Field(
        128,
        ge=1,
        le=32768,
        description="HNSW: candidate list per search, raised to top_k if lower; higher finds more, slower. "
        "A server keeps the ef a loaded segment was first searched with: lowering it needs a reload",
    )
    ivf_nlist: int = Field(
        1024, ge=1, le=65536, description="IVF_FLAT: clusters (set when the index is built)"
    )
    ivf_nprobe: int = Field(32, ge=1, le=65536, description="IVF_FLAT: clusters searched per query")
    enroll_min_score: float = Field(
        0.9, ge=0, le=1, description="an enrollment photo's face needs at least this detector score"
    )
    enroll_min_face_px: float = Field(64.0, ge=16, description="an enrollment face's shorter side, at least")
    ambiguity_area_ratio: float = Field(
        0.4,
        gt=0,
        le=1,
        description="a second usable face at least this share of the first's area makes a photo ambiguous",
    )


class MatcherSettings(EnvNamedSettings):
    """When a face counts as a match, and how repeats are collapsed."""

    model_config = _config("FACESTREAM_MATCHER_")

    match_threshold: float = Field(
        0.40,
        ge=-1,
        le=1,
        description="cosine similarity at or above which a face is a candidate (docs/models.md)",
    )
    top_k: int = Field(3, ge=1, le=100, description="gallery entries returned per face")
    episode_gap_s: float = Field(
        30.0, gt=0, description="a person unseen on a camera this long starts a new episode"
    )
    episode_ttl_s: float = Field(
        3600.0,
        gt=0,
        description="an episode unseen for this long (wall clock) is forgotten; keep it above the hits "
        "topic's retention, so that no redelivered hit can open it again",
    )
    episodes_app_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._\-]{1,200}$",
        description="faust app id of the episode step (its consumer group and changelog topic prefix); "
        "default <topic_prefix>facestream-episodes",
    )
    episodes_data_dir: Path | None = Field(
        None, description="faust's local data directory; default facestream-episodes under the temp dir"
    )
