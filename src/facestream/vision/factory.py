"""Build the configured backends: the `*_type` setting picks the class, the model setting its weights."""

from __future__ import annotations

from facestream.settings import DetectorSettings, EmbedderSettings, ModelSettings
from facestream.vision.detector import FaceDetector, UltraFaceDetector
from facestream.vision.embedder import ArcFaceEmbedder, FaceEmbedder
from facestream.vision.faces import FaceFinder
from facestream.vision.landmarks import Landmarker, Pfld68Landmarker
from facestream.vision.models import load_model
from facestream.vision.quality import QualityGates


def build_detector(s: DetectorSettings, m: ModelSettings) -> FaceDetector:
    model = load_model(s.detector_model, s.detector_model_sha256, m.model_dir)
    if s.detector_type == "ultraface":
        return UltraFaceDetector(
            model,
            score_threshold=s.det_score_threshold,
            nms_iou=s.nms_iou,
            provider=m.execution_provider,
            threads=m.inference_threads,
        )
    raise AssertionError(s.detector_type)  # the settings' Literal makes this unreachable


def build_landmarker(s: DetectorSettings, m: ModelSettings) -> Landmarker:
    model = load_model(s.landmarker_model, s.landmarker_model_sha256, m.model_dir)
    if s.landmarker_type == "pfld68":
        return Pfld68Landmarker(model, provider=m.execution_provider, threads=m.inference_threads)
    raise AssertionError(s.landmarker_type)


def gates_from(s: DetectorSettings) -> QualityGates:
    return QualityGates(
        min_score=s.det_score_threshold,
        min_face_px=s.min_face_px,
        min_sharpness=s.min_sharpness,
        max_abs_yaw=s.max_abs_yaw,
    )


def build_finder(s: DetectorSettings, m: ModelSettings) -> FaceFinder:
    return FaceFinder(build_detector(s, m), build_landmarker(s, m), gates_from(s))


def build_embedder(s: EmbedderSettings, m: ModelSettings) -> FaceEmbedder:
    model = load_model(s.embedder_model, s.embedder_model_sha256, m.model_dir)
    if s.embedder_type == "arcface":
        return ArcFaceEmbedder(
            model, channel_order=s.channel_order, provider=m.execution_provider, threads=m.inference_threads
        )
    raise AssertionError(s.embedder_type)
