"""`--config FILE`: one YAML settings file for a deployment (issue 14).

A value in the file reaches the settings a service or command builds, an env var overrides it and
a flag overrides both; a wrong file gives one line naming file:line and section.key (exit 2 from
the real CLI), never the value; the documented example loads and holds only real settings; the
file is checked against every settings model there is, so none can be missing from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from facestream.services import detector, review
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from facestream.accountability.audit_keys import dev_key_path, key_id
from facestream.accountability.settings import AccountabilitySettings
from facestream.cliargs import OneLineParser, add_settings, describe, settings_from
from facestream.config_file import CONFIG_ENV, load_config, section_of, settings_models
from facestream.errors import ConfigError
from facestream.review.settings import ReviewSettings
from facestream.runtime.service import parse_settings
from facestream.settings import DetectorSettings, GallerySettings, KafkaSettings, RuntimeSettings
from tests.fixtures.audit import make_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "facestream.yaml"

DEPLOYMENT = """\
kafka:
  bootstrap_servers: broker-a:9092
  client_id: 123
runtime:
  batch_size: 8
detector:
  det_score_threshold: 0.7
  track_faces: no
gallery:
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FACESTREAM_* of the machine running the suite may stand in for the file's values."""
    for name in list(os.environ):
        if name.startswith("FACESTREAM_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, name: str = "facestream.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def detector_settings(*argv: str) -> tuple[KafkaSettings, RuntimeSettings, DetectorSettings]:
    """What the detector service would run with, from its own parser and parse_settings."""
    args = detector.parser().parse_args(list(argv))
    settings = parse_settings(args, (KafkaSettings, RuntimeSettings, DetectorSettings))
    return settings[KafkaSettings], settings[RuntimeSettings], settings[DetectorSettings]


# -- precedence: flags > env > file > defaults ----------------------------------------------------


def test_the_file_sets_what_the_service_runs_with(tmp_path: Path) -> None:
    path = write(tmp_path, DEPLOYMENT)
    kafka, runtime, det = detector_settings("--config", str(path))
    assert kafka.bootstrap_servers == "broker-a:9092"
    assert kafka.client_id == "123"  # the text, as FACESTREAM_KAFKA_CLIENT_ID=123 would be
    assert runtime.batch_size == 8
    assert det.det_score_threshold == 0.7
    assert det.track_faces is False
    assert det.nms_iou == DetectorSettings.model_fields["nms_iou"].default  # unset: the default


def test_env_overrides_the_file_and_a_flag_overrides_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, DEPLOYMENT)
    monkeypatch.setenv("FACESTREAM_DETECTOR_DET_SCORE_THRESHOLD", "0.8")
    kafka, _, det = detector_settings("--config", str(path))
    assert det.det_score_threshold == 0.8
    assert kafka.bootstrap_servers == "broker-a:9092"  # the file's other values still apply
    _, _, det = detector_settings("--config", str(path), "--det-score-threshold", "0.9")
    assert det.det_score_threshold == 0.9


def test_a_lower_case_env_var_overrides_the_file_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An env var in lower case sets the field too (pydantic-settings ignores case), so the file's
    value must step aside for it as well."""
    path = write(tmp_path, "runtime:\n  log_level: DEBUG\n")
    monkeypatch.setenv("facestream_log_level", "ERROR")
    _, runtime, _ = detector_settings("--config", str(path))
    assert runtime.log_level == "ERROR"


def test_the_env_var_names_the_file_and_the_flag_wins_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_env = write(tmp_path, "kafka:\n  topic_prefix: env.\n", "env.yaml")
    by_flag = write(tmp_path, "kafka:\n  topic_prefix: flag.\n", "flag.yaml")
    monkeypatch.setenv(CONFIG_ENV, str(by_env))
    assert detector_settings()[0].topic_prefix == "env."
    assert detector_settings("--config", str(by_flag))[0].topic_prefix == "flag."
    # code that builds a model from a Namespace without --config (a library caller) reads the env's file
    assert settings_from(argparse.Namespace(), KafkaSettings).topic_prefix == "env."


def test_the_review_service_reads_its_sections(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "review:\n  review_port: 8181\n  review_confirmations: 3\n"
        "accountability:\n  state_dir: /srv/state\ngallery:\n  gallery: http://milvus:19530\n",
    )
    args = review.parser().parse_args(["--config", str(path)])
    settings = parse_settings(args, review.SETTINGS)
    assert settings[ReviewSettings].review_port == 8181
    assert settings[ReviewSettings].review_confirmations == 3
    assert settings[AccountabilitySettings].state_dir == Path("/srv/state")
    assert settings[GallerySettings].gallery == "http://milvus:19530"


def test_every_command_with_settings_takes_config() -> None:
    parser = OneLineParser(prog="x")
    add_settings(parser, KafkaSettings)
    add_settings(parser, GallerySettings)  # a second call must not add it twice (argparse would raise)
    assert parser.parse_args(["--config", "f.yaml"]).config == Path("f.yaml")
    assert "[config file section kafka:]" in parser.format_help()  # --help says where each group goes


# -- errors: one line, file:line and section.key, never the value -----------------------------------

BAD = [
    ("kafak:\n  client_id: x\n", 1, "kafak: unknown section (did you mean `kafka`?)"),
    ("kafka:\n  client_id: x\n  bootstrap_server: b:9092\n", 3, "kafka.bootstrap_server: unknown setting"),
    ("matcher:\n  det_score_threshold: 0.5\n", 2, "matcher.det_score_threshold: unknown setting; it belongs"),
    ("det_score_threshold: 0.5\n", 1, "det_score_threshold: unknown section; it belongs under `detector:`"),
    ("runtime:\n  audit_key: k\n", 2, "runtime.audit_key: unknown setting; it belongs under `audit:`"),
    ("audit:\n  audit_checkpoint_every: 1\n", 2, "audit.audit_checkpoint_every: Input should be greater"),
    ("\n\ndetector:\n  det_score_threshold: 1.5\n", 4, "detector.det_score_threshold: Input should be less"),
    ("runtime:\n  log_level: LOUD\n", 2, "runtime.log_level: Input should be"),
    ("runtime:\n  batch_size:\n", 2, "runtime.batch_size: Input should be a valid integer"),
    ("kafka:\n  client_id: [a, b]\n", 2, "kafka.client_id: expected one value, not a list"),
    ("kafka:\n  client_id: a\n  client_id: b\n", 3, "kafka.client_id: given twice (first on line 2)"),
    ("kafka: 3\n", 1, "kafka: expected settings"),
    ("- kafka\n", 1, "expected sections"),
    ("kafka:\n  client_id: a\n - b\n", 3, "not valid YAML: expected <block end>"),
    ("kafka:\n\tclient_id: x\n", 2, "not valid YAML: found character '\\t'"),
    ('kafka:\n  client_id: "open\n\n\n', 2, "not valid YAML: found unexpected end of stream (while"),
]


@pytest.mark.parametrize(("text", "line", "says"), BAD, ids=[b[2].split(":")[0] + str(b[1]) for b in BAD])
def test_a_bad_file_is_one_line_naming_file_line_and_key(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: {says}"), message


@pytest.mark.parametrize(
    "text",
    [
        'kafka:\n  sasl_password: "hunter2-secret\n',  # bad YAML on a secret's line
        "kafka:\n  sasl_password: hunter2-secret\n  sasl_mechanism: hunter2-secret\n",  # a bad value
        "photo:\n  photo_key: [hunter2-secret]\n",
        "audit:\n  audit_key: hunter2-secret\n  audit_checkpoint_every: hunter2-secret\n",
        "hunter2-secret:\n  x: 1\n",  # a key is shown, but cut and escaped: no value ever is
    ],
)
def test_no_error_shows_a_value(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    if text.startswith("hunter2"):
        assert "hunter2-secret: unknown section" in str(caught.value)
    else:
        assert "hunter2" not in str(caught.value)


def test_secrets_in_the_file_stay_masked_and_warn_when_others_can_read_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, "kafka:\n  sasl_password: hunter2-secret\n")
    with caplog.at_level(logging.WARNING, logger="facestream.config_file"):
        kafka = settings_from(argparse.Namespace(config=path), KafkaSettings)
    assert isinstance(kafka.sasl_password, SecretStr)
    assert kafka.sasl_password.get_secret_value() == "hunter2-secret"
    assert "hunter2" not in repr(kafka) + str(describe(kafka))
    assert not caplog.records  # mode 600: nothing to say
    readable = write(
        tmp_path, "kafka:\n  sasl_password: hunter2-secret\naudit:\n  audit_key: hunter2-key\n", "r.yaml"
    )
    readable.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="facestream.config_file"):
        load_config(readable)
    [record] = caplog.records
    assert "(kafka.sasl_password, audit.audit_key)" in record.getMessage()
    assert "hunter2" not in record.getMessage()


@pytest.mark.parametrize(
    "text",
    [
        "a: &a [*a, *a]\n",  # an alias loop
        "x: &x [1]\n" + "".join(f"l{i}: &l{i} [*{'x' if i == 0 else f'l{i - 1}'}]\n" for i in range(40)),
        "[" * 5000 + "]" * 5000,
        "\x00\x01",
        "kafka:\n  " + "k" * 100_000 + ": 1\n",
        "? [a, b]\n: 1\n",
        "null: 1\n",
        "kafka: &k\n  client_id: a\nruntime: *k\n",  # the alias takes kafka's keys into runtime
    ],
)
def test_odd_yaml_is_a_config_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_an_empty_file_sets_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    assert detector_settings("--config", str(path))[2] == DetectorSettings()


# -- the documented example and the set of sections -----------------------------------------------


def test_the_example_loads_and_every_key_is_a_real_setting() -> None:
    config = load_config(EXAMPLE)
    assert set(config.sections) == {section_of(m) for m in settings_models()}, "a section is missing"
    for model in settings_models():
        built = settings_from(argparse.Namespace(config=EXAMPLE), model)
        for field, entry in config.values_for(model).items():
            assert field in model.model_fields
            assert getattr(built, field) is not None or entry.value is None, field
    assert "hunter2" not in EXAMPLE.read_text()


def test_the_documentation_lists_every_section() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    listed = set(re.findall(r"^\| `(\w+):` \|", doc, re.MULTILINE))
    assert listed == {section_of(m) for m in settings_models()}


def test_every_settings_model_has_a_section() -> None:
    """A new model that settings_models() does not list would make its section 'unknown'."""
    pattern = re.compile(r"^class (\w+)\((?:BaseSettings|EnvNamedSettings)\):", re.MULTILINE)
    declared = {
        name
        for path in (ROOT / "src" / "facestream").rglob("*.py")
        for name in pattern.findall(path.read_text())
    }
    assert declared - {"EnvNamedSettings"} == {m.__name__ for m in settings_models()}


@pytest.mark.parametrize("model", settings_models(), ids=lambda m: m.__name__)
def test_a_section_is_named_as_its_env_prefix(model: type[BaseSettings]) -> None:
    """kafka: for FACESTREAM_KAFKA_*; the models on plain FACESTREAM_ go by their class name."""
    concern = str(model.model_config.get("env_prefix", "")).removeprefix("FACESTREAM_").rstrip("_")
    assert section_of(model) == (concern.lower() or section_of(model))
    assert re.fullmatch(r"[a-z]+", section_of(model))
    assert len({section_of(m) for m in settings_models()}) == len(settings_models())


# -- the real CLI ---------------------------------------------------------------------------------


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("facestream")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "facestream"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env={**clean, **(env or {})}, cwd=cwd, timeout=120
    )


def ids_of(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["id"] for line in result.stdout.splitlines()]


@pytest.mark.subprocess
def test_a_real_command_follows_file_env_and_flag(tmp_path: Path) -> None:
    """`authorisation grant` writes where the file's state_dir says; `list` reads there, or where
    env and then a flag point instead."""
    state, other = tmp_path / "state", tmp_path / "other"
    path = write(
        tmp_path, f"gallery:\n  gallery: {tmp_path / 'gallery'}\naccountability:\n  state_dir: {state}\n"
    )
    granted = cli(
        "authorisation", "grant", "--config", str(path), "--case", "C-1", "--basis", "test",
        "--purpose", "wanted", "--issued-by", "pytest", "--valid-until", "2099-01-01T00:00:00Z",
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    auth_id = json.loads(granted.stdout)["id"]
    assert auth_id in (state / "authorisations.json").read_text()
    assert ids_of(cli("authorisation", "list", "--config", str(path))) == [auth_id]
    by_env = {"FACESTREAM_STATE_DIR": str(other)}
    assert ids_of(cli("authorisation", "list", "--config", str(path), env=by_env)) == []
    flagged = cli("authorisation", "list", "--config", str(path), "--state-dir", str(state), env=by_env)
    assert ids_of(flagged) == [auth_id]
    assert ids_of(cli("authorisation", "list", env={CONFIG_ENV: str(path)})) == [auth_id]


@pytest.mark.subprocess
def test_a_real_command_signs_as_the_files_audit_section_says(tmp_path: Path) -> None:
    """`authorisation grant` signs with the key file the file names, at its cadence (2: a checkpoint
    after each record), not with a development key; `audit verify` trusts the public key it names."""
    key = make_key(tmp_path)
    pem = tmp_path / "audit-key.pem"
    pem.write_text(key.private_pem)
    pem.chmod(0o600)
    gallery = tmp_path / "gallery"
    path = write(
        tmp_path,
        f"gallery:\n  gallery: {gallery}\naudit:\n  audit_key_file: {pem}\n"
        f"  audit_public_key: {key.public_file}\n  audit_checkpoint_every: 2\n",
    )
    granted = cli(
        "authorisation", "grant", "--config", str(path), "--case", "C-1", "--basis", "test",
        "--purpose", "wanted", "--issued-by", "pytest", "--valid-until", "2099-01-01T00:00:00Z",
    )  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    assert "DEVELOPMENT" not in granted.stderr and not dev_key_path(gallery).exists()
    verified = cli("audit", "verify", "--config", str(path))
    assert verified.returncode == 0, verified.stderr
    verdict = json.loads(verified.stdout)
    assert (verdict["records"], verdict["checkpoints"], verdict["keys_from"]) == (2, 1, "given")
    assert verdict["key_ids"] == [key_id(key.private.public_key())]


CLI_BAD = [
    ("kafak:\n  client_id: x\n", "2", "kafak: unknown section"),
    ("gallery:\n  gallery: g\n  colection: w\n", "4", "gallery.colection: unknown setting"),
    ("gallery:\n  hnsw_m: 1000\n", "3", "gallery.hnsw_m: Input should be less than or equal to 64"),
    ("gallery:\n  gallery: [g\n", "3", "not valid YAML"),
]


@pytest.mark.subprocess
@pytest.mark.parametrize(("text", "line", "says"), CLI_BAD, ids=["section", "key", "value", "yaml"])
def test_the_cli_says_file_line_and_key_and_exits_2(tmp_path: Path, text: str, line: str, says: str) -> None:
    path = write(tmp_path, "\n" + text)  # a leading blank line: the line is the file's, not the section's
    result = cli("authorisation", "list", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [message] = result.stderr.splitlines()
    assert message.startswith(f"facestream: error: {path}:{line}: ") and says in message, message
