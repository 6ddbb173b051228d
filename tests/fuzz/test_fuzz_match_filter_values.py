"""Issue 12.2: no string a record carries can stop the matcher or widen its search.

The match stage runs under the real policy (authorisations on disk) over a Milvus Lite gallery in
which Obama is enrolled four times from one photo: under the real embedder's model and an
authorisation for every camera, under the same model and an authorisation for camera "gate" only,
under another model, and under an authorisation nobody granted. Real embeddings records of his
probe photo (through the Avro codec, as the matcher reads them) carry arbitrary strings in every
text field: `model_id` reaches the Milvus filter, `camera_id` picks the authorisations that do,
`frame_id` and `source` only travel. Every record gets an outcome, never an exception: a
`bad_model_id` dead letter exactly when the model id is outside the filter's alphabet, otherwise
the hits its model and camera are entitled to and no others, so `m" or model_id != "` and its
kind match nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from facestream import codec
from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.policy import AccountablePolicy
from facestream.accountability.rules import RuleStore
from facestream.accountability.zones import CameraZones
from facestream.errors import InvalidMessage
from facestream.gallery.store import FOREVER_MS, MAX_FILTER_VALUE, Gallery, GalleryEntry, filter_value_problem
from facestream.messages import Embedding, FrameRef, Hit
from facestream.settings import GallerySettings, MatcherSettings
from facestream.stages.match import BAD_MODEL_ID, MatchStage
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder
from facestream.vision.models import BUILTIN_MODELS, model_id_for
from tests.fixtures.media import embedding_of, vector_of
from tests.fuzz.strategies import fuzz

_SPEC = BUILTIN_MODELS["mobilefacenet-arcface-512"]
MODEL = model_id_for(_SPEC.name, _SPEC.sha256)
"""The real embedder's id, the one the probe records are made with."""
OTHER_MODEL = "other-model@000000000000"
GATE = "gate"
NOBODYS_AUTHORISATION = "auth_0000000000000000"

INJECTIONS = [
    'm" or model_id != "',
    '" or model_id != "',
    f'{MODEL}" or model_id != "',
    f'{MODEL}" || model_id like "%',
    f'{OTHER_MODEL}" or authorisation_id != "',
    '" or valid_until_ms > 0 or model_id == "',
    "' or 1 == 1 or '",
    f"{MODEL}\\",
    f'{MODEL}\\" or model_id != \\"',
    f"{MODEL}\n",
    f"{MODEL} ",
    "arcface r50 (licensed)@87aacdfe5751",  # what a model file named with spaces used to give
    "x\\u0041",
    "é",
    "\x00",
]
"""Model ids a hostile producer (or an old facestream) might send; each one the alphabet refuses."""

any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
long_text = st.builds(lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(100, 20_000))
filter_safe = st.from_regex(r"[A-Za-z0-9_.@:\-]{1,40}", fullmatch=True)
model_ids = st.one_of(
    st.sampled_from([MODEL, OTHER_MODEL, "", *INJECTIONS]),
    any_text,
    long_text,
    filter_safe,
    st.builds(lambda m, tail: m + tail, st.sampled_from([MODEL, OTHER_MODEL]), any_text),
)
cameras = st.one_of(st.just(GATE), st.just("lobby"), any_text, long_text)


@dataclass(frozen=True)
class World:
    stage: MatchStage
    probe: Embedding


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, finder: FaceFinder, embedder: FaceEmbedder, faces_dir: Path
) -> Iterator[World]:
    assert embedder.model_id == MODEL
    root = tmp_path_factory.mktemp("match-filter-values")
    state = root / "state"
    state.mkdir()
    store = AuthorisationStore(state)
    grant = {
        "legal_basis": "test",
        "purpose": "wanted",
        "issued_by": "pytest",
        "granted_by": "pytest",
        "valid_from_ms": 0,
        "valid_until_ms": int(time.time() * 1000) + 86_400_000,
    }
    everywhere = store.grant(case_ref="ALL", **grant).id  # type: ignore[arg-type]
    gate_only = store.grant(case_ref="GATE", cameras=[GATE], **grant).id  # type: ignore[arg-type]
    gallery = Gallery(GallerySettings(gallery=str(root / "gallery")), dim=embedder.dim)
    enrolled = vector_of(finder, embedder, faces_dir / "enroll" / "obama_1.jpg")
    rows = [
        ("obama", everywhere, MODEL),
        ("obama-at-the-gate", gate_only, MODEL),
        ("obama-other-model", everywhere, OTHER_MODEL),
        ("obama-unauthorised", NOBODYS_AUTHORISATION, MODEL),
    ]
    gallery.add(
        [
            GalleryEntry(f"e{i}", who, auth, model, "p", 0, FOREVER_MS)
            for i, (who, auth, model) in enumerate(rows)
        ],
        np.repeat(enrolled, len(rows), axis=0),
    )
    policy = AccountablePolicy(store, RuleStore(state), CameraZones({GATE: "north"}))
    stage = MatchStage(gallery, threshold=MatcherSettings().match_threshold, top_k=5, policy=policy)
    ref = FrameRef(GATE, "f", int(time.time() * 1000), "probe.jpg")
    try:
        yield World(stage, embedding_of(finder, embedder, faces_dir / "probe" / "obama.jpg", ref))
    finally:
        gallery.close()


def entitled(model_id: str, camera_id: str) -> set[str]:
    """Who a face of Obama may match: its own model's entries, under authorisations for its camera."""
    if model_id == MODEL:
        return {"obama"} | ({"obama-at-the-gate"} if camera_id == GATE else set())
    if model_id == OTHER_MODEL:
        return {"obama-other-model"}
    return set()


def record(world: World, model_id: str, camera_id: str, frame_id: str, source: str) -> Embedding:
    """The probe record carrying these strings, as the matcher reads it off the topic."""
    ref = dataclasses.replace(world.probe.ref, camera_id=camera_id, frame_id=frame_id, source=source)
    return codec.EMBEDDINGS.decode(
        codec.EMBEDDINGS.encode(dataclasses.replace(world.probe, ref=ref, model_id=model_id))
    )


def check(outcome: list[Hit] | InvalidMessage, sent: Embedding) -> None:
    problem = filter_value_problem(sent.model_id)
    if problem is not None:
        assert isinstance(outcome, InvalidMessage), (sent.model_id, outcome)
        assert outcome.reason == BAD_MODEL_ID
        assert outcome.detail.startswith("model_id ") and problem in outcome.detail
        assert len(outcome.detail) < 300  # a header, not the whole value
        return
    assert isinstance(outcome, list), outcome
    assert {h.identity for h in outcome} == entitled(sent.model_id, sent.ref.camera_id), sent.model_id
    assert all(h.model_id == sent.model_id and h.ref == sent.ref for h in outcome)


@given(
    st.lists(st.tuples(model_ids, cameras, st.one_of(any_text, long_text), any_text), min_size=1, max_size=4)
)
@example([('m" or model_id != "', GATE, "f", "s"), (MODEL, GATE, "f", "s")])
@example([(f'{MODEL}" or model_id != "', "lobby", "f", "s"), (OTHER_MODEL, "lobby", "f", "s")])
@fuzz(300)
def test_any_strings_in_a_record_give_a_dead_letter_or_exactly_the_entitled_hits(
    world: World, fields: list[tuple[str, str, str, str]]
) -> None:
    sent = [record(world, *f) for f in fields]
    outcomes = world.stage.process(sent)
    assert len(outcomes) == len(sent)
    for outcome, one in zip(outcomes, sent, strict=True):
        check(outcome, one)


@pytest.mark.parametrize("model_id", INJECTIONS)
def test_an_injected_model_id_is_dead_lettered_and_the_good_record_beside_it_still_matches(
    world: World, model_id: str
) -> None:
    assert filter_value_problem(model_id) is not None
    bad, good = record(world, model_id, GATE, "bad", "s"), record(world, MODEL, GATE, "good", "s")
    outcomes = world.stage.process([bad, good])
    assert isinstance(outcomes[0], InvalidMessage) and outcomes[0].reason == BAD_MODEL_ID
    assert isinstance(outcomes[1], list)
    assert sorted(h.identity for h in outcomes[1]) == ["obama", "obama-at-the-gate"]


def test_a_model_id_longer_than_the_column_is_dead_lettered(world: World) -> None:
    longest = "m" * MAX_FILTER_VALUE
    assert world.stage.process([record(world, longest, GATE, "f", "s")]) == [[]]
    [outcome] = world.stage.process([record(world, longest + "m", GATE, "f", "s")])
    assert isinstance(outcome, InvalidMessage) and outcome.reason == BAD_MODEL_ID
