"""Camera configs: one clear ConfigError line for every kind of bad config; credentials hidden."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest

from facestream import codec
from facestream.camera.spec import CameraSpec, load_cameras, parse_camera, redact, secrets_of
from facestream.errors import ConfigError

GOOD = {"camera_id": "gate-3", "url": "rtsp://op:Secr3t@10.0.0.7/main", "fps": 5}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({**GOOD, "fsp": 5}, "fsp: Extra inputs are not permitted"),
        ({**GOOD, "camera_id": "gate 3"}, "camera_id: String should match pattern"),
        ({**GOOD, "camera_id": "-gate"}, "camera_id: String should match pattern"),
        ({**GOOD, "camera_id": ""}, "camera_id: String should match pattern"),
        ({**GOOD, "fps": 0}, "fps: Input should be greater than 0"),
        ({**GOOD, "fps": 31}, "fps: Input should be less than or equal to 30"),
        ({**GOOD, "fps": "fast"}, "fps: Input should be a valid number"),
        ({**GOOD, "url": ""}, "url: String should have at least 1 character"),
        ({**GOOD, "start_at_ms": -5}, "start_at_ms: Input should be greater than or equal to 0"),
        ({"url": "x.mp4"}, "camera_id: Field required"),
    ],
)
def test_bad_configs_give_one_line_naming_the_field(config: dict[str, object], expected: str) -> None:
    for form in (config, json.dumps(config).encode(), json.dumps(config)):
        with pytest.raises(ConfigError) as caught:
            parse_camera(form)  # type: ignore[arg-type]
        message = str(caught.value)
        assert message.startswith("invalid camera config: ") and expected in message
        assert "\n" not in message
        assert "Secr3t" not in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"camera_id": "a", "url": ', "Invalid JSON"),
        (b"not json at all", "Invalid JSON"),
        (b"\xff\xfe\x00", "Invalid JSON"),
        (b"[1, 2]", "Input should be an object"),
        (b'{"camera_id": "a", "url": "x", "fps": NaN}', "fps: Input should be a finite number"),
    ],
)
def test_bad_json_gives_one_line(raw: bytes, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_camera(raw)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_several_problems_name_the_first_and_count_the_rest() -> None:
    with pytest.raises(ConfigError, match=r"\(and 2 more\)$"):
        parse_camera({"camera_id": "a b", "url": "", "fps": 99})


def test_the_avro_form_of_the_cameras_topic_is_read_and_checked() -> None:
    spec = parse_camera(GOOD)  # type: ignore[arg-type]
    assert parse_camera(codec.CAMERAS.encode(spec)) == spec
    with pytest.raises(ConfigError, match=r"^invalid camera config: undecodable: "):
        parse_camera(codec.CAMERAS.encode(spec)[:-3])
    with pytest.raises(ConfigError, match="unknown_schema"):
        parse_camera(b"\x00\x00\x00\x00\x01" + codec.CAMERAS.encode(spec)[5:])


def test_the_decoder_survives_the_avro_form_and_a_v1_config_reads_as_auto() -> None:
    """cameras v1 had no `decoder`: a camera put through it silently became `auto` (v2 carries it)."""
    spec = parse_camera({**GOOD, "decoder": "opencv"})  # type: ignore[dict-item]
    assert parse_camera(codec.CAMERAS.encode(spec)).decoder == "opencv"
    record = {k: v for k, v in codec.CAMERAS.to_record(spec).items() if k != "decoder"}
    out = io.BytesIO()
    out.write(b"\x00" + codec.BUILTIN.id_of("cameras/v1.avsc").to_bytes(4, "big"))
    fastavro.schemaless_writer(out, codec.BUILTIN.parsed("cameras/v1.avsc"), record)
    assert parse_camera(out.getvalue()) == spec.model_copy(update={"decoder": "auto"})


def test_an_out_of_range_avro_config_is_refused_like_json() -> None:
    record = codec.CAMERAS.to_record(parse_camera(GOOD))  # type: ignore[arg-type]
    record["fps"] = 60.0
    out = io.BytesIO()
    out.write(b"\x00" + codec.BUILTIN.id_of("cameras/v1.avsc").to_bytes(4, "big"))
    fastavro.schemaless_writer(out, codec.BUILTIN.parsed("cameras/v1.avsc"), record)
    with pytest.raises(ConfigError, match=r"fps: Input should be less than or equal to 30"):
        parse_camera(out.getvalue())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://op:Secr3t@10.0.0.7:554/main", "rtsp://***@10.0.0.7:554/main"),
        ("rtsp://op@10.0.0.7/main", "rtsp://***@10.0.0.7/main"),
        (
            "http://10.0.0.7/video.mjpg?user=op&pwd=Secr3t&res=hd",
            "http://10.0.0.7/video.mjpg?user=***&pwd=***&res=hd",
        ),
        ("http://10.0.0.7/snap?token=Secr3t", "http://10.0.0.7/snap?token=***"),
        ("http://10.0.0.7/video.mjpg?channel=2", "http://10.0.0.7/video.mjpg?channel=2"),
        ("/data/videos/gate.mp4", "/data/videos/gate.mp4"),
        ("http://op:Secr3t@10.0.0.7:notaport/x", "<unparseable url>"),
    ],
)
def test_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert redact(url) == shown
    spec = CameraSpec(camera_id="c", url=url)
    assert spec.redacted_url == shown
    assert "Secr3t" not in repr(spec) and "Secr3t" not in str(spec)
    assert all(s not in shown for s in secrets_of(url))


def test_load_cameras_refuses_duplicates_and_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "cameras.json"
    path.write_text(json.dumps([GOOD, {**GOOD, "url": "other.mp4"}]))
    with pytest.raises(ConfigError, match="duplicate camera ids: gate-3"):
        load_cameras(path)
    path.write_text(json.dumps(GOOD))
    with pytest.raises(ConfigError, match="expected a JSON list"):
        load_cameras(path)
    path.write_text("[{")
    with pytest.raises(ConfigError, match="cannot read cameras file"):
        load_cameras(path)
    path.write_text(json.dumps([GOOD, {"camera_id": "b", "url": "b.mp4"}]))
    assert [c.camera_id for c in load_cameras(path)] == ["gate-3", "b"]
