"""The metrics the dashboards and alert rules use are the ones running services export.

All five services run as real processes on the real broker, fed a camera that works (an
enrolled person and a blurred face), a camera that cannot open, a garbage frame, a decision
from nobody and a wrong reviewer password; the candidate expires unreviewed. Then their /metrics
are scraped and compared with every name and grouping label in the chart's dashboards and rules,
and the other way round.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from facestream.review.messages import Decision
from facestream.review.wire import REVIEWS
from facestream.sample import make_camera_video
from facestream.settings import KafkaSettings, ModelSettings
from facestream.transport import topics
from facestream.transport.kafka import client_config
from tests.fixtures.helm import Rendered
from tests.integration.processes import ServiceProcess, kafka_args, services, wait_until
from tests.integration.test_pipeline_kafka import enroll, put_cameras
from tests.observability.promql import (
    PROMETHEUS_SERIES,
    TARGET_LABELS,
    dashboard_queries,
    family_of,
    rule_queries,
)

Scrape = dict[str, list[dict[str, str]]]
"""sample name -> label sets of its samples"""

ONLY_ON_FAILURE = {"facestream_stage_errors_total"}
"""Labelled by the kind of a failed batch: no sample until one fails (tests/runtime cover it)."""
KEY_LABELLED = {
    "facestream_stage_messages_total": {"stage", "outcome"},
    "facestream_dlq_messages_total": {"stage", "reason"},
    "facestream_consumer_lag_messages": {"stage", "topic", "partition"},
    "facestream_last_poll_timestamp_seconds": {"stage"},
    "facestream_camera_up": {"camera"},
    "facestream_camera_fps": {"camera"},
    "facestream_camera_last_frame_age_seconds": {"camera"},
    "facestream_camera_reconnects_total": {"camera"},
    "facestream_camera_frozen": {"camera"},
    "facestream_camera_black": {"camera"},
    "facestream_frames_published_total": {"camera"},
    "facestream_faces_rejected_total": {"reason"},
    "facestream_stage_batch_duration_seconds_bucket": {"stage", "le"},
    "facestream_review_decisions_total": {"decision"},
    "facestream_review_votes_total": {"decision", "result"},
    "facestream_review_signins_total": {"result"},
}


def scrape(proc: ServiceProcess) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port()}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


def merged(procs: list[ServiceProcess]) -> Scrape:
    out: Scrape = {}
    for proc in procs:
        for name, labels in scrape(proc).items():
            out.setdefault(name, []).extend(labels)
    return out


def has(scraped: Scrape, name: str, **labels: str) -> bool:
    return any(s.items() >= labels.items() for s in scraped.get(name, []))


def test_dashboards_and_rules_match_what_services_export(
    kafka_topics: KafkaSettings,
    model_settings: ModelSettings,
    faces_dir: Path,
    rendered: dict[str, Rendered],
    tmp_path: Path,
) -> None:
    settings = kafka_topics
    gallery = tmp_path / "gallery"
    enroll(gallery, model_settings.model_dir, "obama", sorted((faces_dir / "enroll").glob("obama_*.jpg")))
    blurred = tmp_path / "blurred.jpg"
    cv2.imwrite(
        str(blurred),
        cv2.GaussianBlur(cv2.imread(str(faces_dir / "probe" / "alex_lacamoire.jpg")), (0, 0), 12),
    )
    video = make_camera_video(
        [faces_dir / "probe" / "obama.jpg", blurred], tmp_path / "cam.mp4", seconds_each=2
    )
    common = [*kafka_args(settings), "--metrics-port", "0"]
    group = ["--group-id"]
    model = ["--model-dir", str(model_settings.model_dir), "--execution-provider", "cpu"]

    with services(tmp_path) as running:
        sampler = running.start(
            "frame-sampler", *common, *group, settings.topic_prefix + "sampler",
            "--realtime-files", "--loop-files", "--fps", "4", "--reconnect-initial-s", "0.2",
        )  # fmt: skip
        detector = running.start("detector", *common, *group, settings.topic_prefix + "detector", *model)
        embedder = running.start("embedder", *common, *group, settings.topic_prefix + "embedder", *model)
        matcher = running.start(
            "matcher", *common, *group, settings.topic_prefix + "matcher",
            "--gallery", str(gallery), "--episodes-data-dir", str(tmp_path / "faust"),
        )  # fmt: skip
        review = running.start(
            "review", *common, *group, settings.topic_prefix + "review",
            "--state-dir", str(gallery), "--review-port", "0", "--review-window-s", "3",
            "--review-sweep-interval-s", "0.5", "--review-data-dir", str(tmp_path / "faust-review"),
        )  # fmt: skip
        procs = [sampler, detector, embedder, matcher, review]
        put_cameras(
            settings,
            [
                {"camera_id": "cam-ok", "url": str(video)},
                {"camera_id": "cam-gone", "url": str(tmp_path / "no.mp4")},
            ],
            tmp_path / "cameras.json",
        )
        producer = Producer(client_config(settings))
        producer.produce(settings.topic_prefix + topics.FRAMES, b"not a frame", key=b"cam-x")
        nobody = Decision.new("0" * 24, "nobody", "confirm", int(time.time() * 1000))
        producer.produce(settings.topic_prefix + topics.REVIEWS, REVIEWS.encode(nobody), key=nobody.key)
        producer.flush(30)
        web_port = int(wait_for_line(review, r"review web app on port (\d+)"))
        sign_in = urllib.request.Request(
            f"http://127.0.0.1:{web_port}/api/login",
            data=json.dumps({"name": "mallory", "password": "guess"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(sign_in, timeout=10)
        assert refused.value.code == 401

        waiting: dict[str, bool] = {}

        def fed() -> bool:
            s = merged(procs)
            waiting.update(
                reconnects=has(s, "facestream_camera_reconnects_total", camera="cam-gone"),
                dlq=has(s, "facestream_dlq_messages_total", stage="detector"),
                rejected=has(s, "facestream_faces_rejected_total"),
                lag=has(s, "facestream_consumer_lag_messages", stage="matcher"),
                candidate=any(scrape_values(matcher, "facestream_frame_to_candidate_latency_seconds_count")),
                expired=has(s, "facestream_review_decisions_total", decision="expired"),
                refused=has(s, "facestream_review_votes_total", decision="confirm", result="refused"),
                signin=has(s, "facestream_review_signins_total", result="failed"),
            )
            return all(waiting.values())

        try:
            wait_until(fed, 120, "every labelled series", *procs, interval_s=1.0)
        except AssertionError as exc:
            raise AssertionError(
                f"still waiting for {[k for k, v in waiting.items() if not v]}: {exc}"
            ) from None
        scraped = merged(procs)
        help_text = scraped_help(matcher)

    queries = [*dashboard_queries(), *rule_queries(rendered["02-keda"])]
    used = {name for q in queries for name in q.metrics} - PROMETHEUS_SERIES
    exported = {name for name, labels in scraped.items() if name.startswith("facestream_") and labels}

    missing = used - exported - ONLY_ON_FAILURE
    assert not missing, f"dashboards/rules use metrics no running service exports: {missing}"
    for name in ONLY_ON_FAILURE:
        assert f"# HELP {name}" in help_text, f"{name} is not even registered"

    # ...and the other way round: what the services export for the key concerns is on a dashboard.
    unused = {family_of(n) for n in exported if not n.endswith("_created")} - {family_of(n) for n in used}
    assert not unused, f"exported but on no dashboard or rule: {unused}"

    for name, labels in KEY_LABELLED.items():
        assert any(set(s) >= labels for s in scraped.get(name, [])), f"{name} lacks samples with {labels}"

    # Grouping labels in the queries exist on the series they group.
    for q in queries:
        wanted = q.grouping_labels - TARGET_LABELS
        for name in q.metrics & exported:
            assert any(set(s) >= wanted for s in scraped[name]), f"{q.where}: {name} has no {wanted} labels"


def wait_for_line(proc: ServiceProcess, pattern: str, timeout_s: float = 60) -> str:
    found: list[str] = []

    def logged() -> bool:
        match = re.search(pattern, proc.log())
        if match:
            found.append(match.group(1))
        return bool(match)

    wait_until(logged, timeout_s, pattern, proc)
    return found[0]


def scrape_values(proc: ServiceProcess, name: str) -> list[float]:
    return [value for _, value in proc.samples(name)]


def scraped_help(proc: ServiceProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port()}/metrics", timeout=10) as response:
        return str(response.read().decode())
