"""The service seam keeps its types: settings by model, a service typed by its stage's records."""

from __future__ import annotations

import pytest

from facestream.runtime.service import parse_settings
from facestream.settings import DetectorSettings, KafkaSettings, RuntimeSettings, Settings
from services import detector


def test_settings_are_found_by_their_model() -> None:
    kafka = KafkaSettings(bootstrap_servers="broker-1:9093")
    settings = Settings(kafka, RuntimeSettings(batch_size=7))
    assert settings[KafkaSettings] is kafka
    assert settings[RuntimeSettings].batch_size == 7
    assert settings.get(DetectorSettings) is None


def test_a_model_the_process_was_not_given_is_named() -> None:
    with pytest.raises(KeyError, match="DetectorSettings is not among"):
        Settings(KafkaSettings())[DetectorSettings]


def test_a_service_parses_its_flags_into_each_model() -> None:
    args = detector.parser().parse_args(
        ["--bootstrap-servers", "b:1", "--batch-size", "3", "--max-future-skew-s", "9"]
    )
    settings = parse_settings(args, (KafkaSettings, RuntimeSettings, DetectorSettings))
    assert settings[KafkaSettings].bootstrap_servers == "b:1"
    assert settings[RuntimeSettings].batch_size == 3
    assert settings[DetectorSettings].max_future_skew_s == 9
