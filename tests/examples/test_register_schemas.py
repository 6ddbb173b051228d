"""examples/register_schemas.py against a real Confluent-compatible registry (Conduit's, built by
scripts/schema-registry.sh): every schema under its topic's subject with the id facestream's
messages carry, so a registry-resolving consumer reads what facestream wrote."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from facestream import codec
from facestream.messages import Frame, FrameRef
from facestream.transport.topics import CATALOGUE

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "register_schemas.py"
INDEX = json.loads((REPO / "schemas" / "index.json").read_text())["schemas"]

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def registry_binary() -> str:
    done = subprocess.run(
        [str(REPO / "scripts" / "schema-registry.sh"), "env"], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/schema-registry.sh failed:\n{done.stderr[-2000:]}")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)["SCHEMA_REGISTRY"]


@pytest.fixture
def registry(registry_binary: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty registry on a free loopback port."""
    port_file = tmp_path / "registry.url"
    proc = subprocess.Popen(
        [registry_binary, "-port-file", str(port_file)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert proc.poll() is None, "the registry exited"
            assert time.monotonic() < deadline, "the registry did not start in 30 s"
            time.sleep(0.05)
        yield port_file.read_text().strip()
    finally:
        proc.terminate()
        proc.wait(10)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)


def test_every_schema_is_registered_under_its_topic_with_facestreams_id(registry: str) -> None:
    done = run("--registry", registry)
    assert done.returncode == 0, done.stderr
    for schema_id, path in INDEX.items():
        stored = get(f"{registry}/schemas/ids/{schema_id}")
        assert json.loads(stored["schema"]) == json.loads((REPO / "schemas" / path).read_text()), path
    assert get(f"{registry}/subjects/cameras-value/versions") == [1, 2]  # v1 (id 6), v2 (id 9)
    assert get(f"{registry}/subjects/alerts.confirmed-value/versions") == [1, 2]  # ids 8, 12
    assert get(f"{registry}/subjects/matches-value/versions") == [1, 2]  # ids 5, 11
    assert len(done.stdout.splitlines()) == len(INDEX)


def test_the_subjects_are_facestreams_avro_topics() -> None:
    """Each schema subject maps to a topic of the catalogue, and each is mapped."""
    from_script = subprocess.run(
        [sys.executable, str(SCRIPT), "--registry", "http://unused", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert from_script.returncode == 0, from_script.stderr
    subjects = {line.split(":")[0] for line in from_script.stdout.splitlines()}
    catalogue = {spec.name for spec in CATALOGUE}
    assert {s.removesuffix("-value") for s in subjects} <= catalogue
    assert {path.split("/")[0] for path in INDEX.values()} == {
        line.split(": ")[1].split("/")[0] for line in from_script.stdout.splitlines()
    }


def test_a_second_run_changes_nothing_and_a_prefix_names_the_subjects(registry: str) -> None:
    first, second = run("--registry", registry), run("--registry", registry)
    assert first.returncode == second.returncode == 0, second.stderr
    assert first.stdout == second.stdout
    assert get(f"{registry}/subjects/frames-value/versions") == [1]
    prefixed = run("--registry", registry, "--topic-prefix", "city1.")
    assert prefixed.returncode == 0, prefixed.stderr  # the same schemas: the same ids, new subjects
    assert get(f"{registry}/subjects/city1.frames-value/versions") == [1]


def test_a_registry_that_numbers_other_schemas_is_refused_naming_the_first(registry: str) -> None:
    post(f"{registry}/subjects/other-value/versions", {"schema": '{"type":"string"}'})
    done = run("--registry", registry)
    assert done.returncode == 1
    assert (
        "frames-value: the registry gave frames/v1.avsc id 2, but facestream's messages carry id 1:"
        in done.stderr
    )
    assert done.stdout == ""


def test_what_facestream_wrote_reads_through_the_registry(registry: str) -> None:
    """A consumer that knows only the registry: the id in the header, the schema from the registry."""
    assert run("--registry", registry).returncode == 0
    frame = Frame(
        FrameRef("gate-3", "gate-3@1700000000000", 1_700_000_000_000, "rtsp://cam"), 64, 48, b"\xff\xd8"
    )
    data = codec.FRAMES.encode(frame)
    assert data[0] == 0
    schema = json.loads(get(f"{registry}/schemas/ids/{int.from_bytes(data[1:5], 'big')}")["schema"])
    record = fastavro.schemaless_reader(io.BytesIO(data[5:]), fastavro.parse_schema(schema), None)
    assert isinstance(record, dict)
    assert (record["camera_id"], record["width"], record["jpeg"]) == ("gate-3", 64, b"\xff\xd8")


def test_an_unreachable_registry_or_a_bad_url_is_one_line() -> None:
    down = run("--registry", "http://127.0.0.1:9")
    assert down.returncode == 1
    assert down.stderr.startswith("register_schemas: cannot reach the registry at http://127.0.0.1:9")
    assert len(down.stderr.strip().splitlines()) == 1
    bad = run("--registry", "registry:8081")
    assert bad.returncode == 2
    assert "--registry must be an http(s):// URL" in bad.stderr
