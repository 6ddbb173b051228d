"""The embedder: unit vectors, batching that changes nothing, and the batch-1 graph made batchable."""

from __future__ import annotations

import numpy as np
import pytest

from facestream.settings import EmbedderSettings, ModelSettings
from facestream.vision.embedder import FaceEmbedder, with_symbolic_batch
from facestream.vision.models import load_model
from facestream.vision.onnx_session import create_session
from tests.fixtures.media import LabelledFace


@pytest.fixture(scope="module")
def crops(labelled_faces: list[LabelledFace]) -> np.ndarray:
    return np.stack([f.observation.aligned for f in labelled_faces])


def test_vectors_are_unit_length(embedder: FaceEmbedder, crops: np.ndarray) -> None:
    vectors = embedder.embed(crops)
    assert vectors.shape == (len(crops), embedder.dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_batch_equals_one_by_one(embedder: FaceEmbedder, crops: np.ndarray) -> None:
    batch = embedder.embed(crops)
    single = np.concatenate([embedder.embed(c[None]) for c in crops])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    # and the rows really differ: a batch that repeated one vector would also be "unit length"
    assert float((batch @ batch.T)[np.triu_indices(len(batch), 1)].min()) < 0.5


def test_wrong_crop_shape_is_refused(embedder: FaceEmbedder) -> None:
    with pytest.raises(ValueError, match="112"):
        embedder.embed(np.zeros((1, 100, 100, 3), np.uint8))


def test_symbolic_batch_gives_identical_vectors(model_settings: ModelSettings, crops: np.ndarray) -> None:
    model = load_model(EmbedderSettings().embedder_model, None, model_settings.model_dir)
    fixed = create_session(model.data, provider="cpu")
    batchable = create_session(with_symbolic_batch(model.data), provider="cpu")
    tensor = ((crops.astype(np.float32) - 127.0) / 128.0).transpose(0, 3, 1, 2)
    name = fixed.get_inputs()[0].name
    assert fixed.get_inputs()[0].shape[0] == 1
    assert not isinstance(batchable.get_inputs()[0].shape[0], int)
    one_by_one = np.concatenate([fixed.run(None, {name: t[None]})[0] for t in tensor])
    batched = batchable.run(None, {batchable.get_inputs()[0].name: tensor})[0]
    assert batched.shape == one_by_one.shape == (len(crops), 512)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    with pytest.raises(Exception, match=r"(?i)dimension|shape|reshape"):
        fixed.run(None, {name: tensor[:2]})
