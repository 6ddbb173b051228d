"""The face_recognition (dlib) side of load-tests/compare_face_recognition.py, run in its own venv.

Runs under scripts/face-recognition-venv.sh's Python, never the project's: it imports nothing of
facestream (not installed there), only the standard library, numpy and face_recognition.
The parent starts it with OMP_NUM_THREADS=1 (and the BLAS equivalents) so dlib runs on one
thread, as the issue's measurement did.

    <venv>/bin/python load-tests/face_recognition_worker.py JOB.json

JOB.json: {"enroll": {identity: [photo, ...]}, "clips": {name: [frame.jpg, ...]},
"tolerance": 0.6, "upsample": 1}. Prints one JSON object on stdout: per clip and per frame, the
CPU time of this process (time.process_time(): user + system, all threads) spent decoding the
JPEG, `face_locations(model="hog")`, `face_encodings` and the comparison with the enrolled
encodings, and what each face was identified as. Enrollment, imports and model loading are
outside the timed part (facestream's side leaves them out too).
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def identify(
    encodings: list[npt.NDArray[np.float64]],
    known: npt.NDArray[np.float64],
    names: list[str],
    tolerance: float,
) -> list[tuple[str, float] | None]:
    """Each face's nearest enrolled encoding (Euclidean, as face_recognition.face_distance), kept
    when within `tolerance` (face_recognition's default 0.6): (identity, distance), else None."""
    out: list[tuple[str, float] | None] = []
    for encoding in encodings:
        distances = np.linalg.norm(known - encoding, axis=1)
        best = int(np.argmin(distances))
        distance = float(distances[best])
        out.append((names[best], round(distance, 4)) if distance <= tolerance else None)
    return out


def largest_face_encoding(fr: Any, path: str, upsample: int) -> npt.NDArray[np.float64]:
    """An enrollment photo's encoding: its largest face, as facestream's enrollment takes the
    dominant face."""
    image = fr.load_image_file(path)
    boxes = fr.face_locations(image, number_of_times_to_upsample=upsample, model="hog")
    if not boxes:
        raise SystemExit(f"face_recognition found no face in enrollment photo {path}")
    box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
    return np.asarray(fr.face_encodings(image, known_face_locations=[box])[0], np.float64)


def run_frame(fr: Any, path: str, known: Any, names: list[str], job: dict[str, Any]) -> dict[str, Any]:
    """One frame, timed whole (`cpu_ms`) and by step, on this process's CPU clock."""
    started = time.process_time()
    image = fr.load_image_file(path)
    decoded = time.process_time()
    boxes = fr.face_locations(image, number_of_times_to_upsample=job["upsample"], model="hog")
    located = time.process_time()
    encodings = fr.face_encodings(image, known_face_locations=boxes)
    encoded = time.process_time()
    found = identify(encodings, known, names, job["tolerance"])
    done = time.process_time()
    return {
        "cpu_ms": round((done - started) * 1000, 3),
        "stages_ms": {
            "decode": round((decoded - started) * 1000, 3),
            "face_locations (HOG)": round((located - decoded) * 1000, 3),
            "face_encodings": round((encoded - located) * 1000, 3),
            "compare": round((done - encoded) * 1000, 3),
        },
        "faces": len(boxes),
        "identities": [f for f in found if f is not None],
    }


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[1]).read_text())
    import dlib
    import face_recognition as fr

    names, vectors = [], []
    for identity, photos in job["enroll"].items():
        for photo in photos:
            names.append(identity)
            vectors.append(largest_face_encoding(fr, photo, job["upsample"]))
    known = np.stack(vectors)
    clips: dict[str, Any] = {}
    for name, frames in job["clips"].items():
        run_frame(fr, frames[0], known, names, job)  # warm-up, not counted (facestream's side too)
        rows = []
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for path in frames:
            rows.append(run_frame(fr, path, known, names, job))
        clips[name] = {
            "cpu_s": round(time.process_time() - cpu0, 4),
            "wall_s": round(time.perf_counter() - wall0, 4),
            "frames": rows,
        }
    threads = next(
        int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("Threads:")
    )  # fmt: skip
    json.dump(
        {
            "versions": {
                "dlib": dlib.__version__,
                **{p: version(p) for p in ("dlib-bin", "face_recognition", "face_recognition_models")},
            },
            "dlib_uses_cuda": bool(getattr(dlib, "DLIB_USE_CUDA", False)),
            "process_threads": threads,
            "enrolled_encodings": len(names),
            "clips": clips,
        },
        sys.stdout,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
