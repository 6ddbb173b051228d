"""`identify --annotate DIR`: each candidate's frame as a picture, and one HTML page of the run.

A picture shows the candidate's face boxed, with its identity and score; every other face in the
frame is pixelated past recognition first (other candidates of the same frame included: each
picture is about one candidate), so nothing of a person who did not match is kept. The faces to
hide are found again on the frame by the detector at a low score threshold (BLUR_SCORE): a face
the pipeline's gates dropped, or too doubtful to be searched, is still a face. The thumbnails on
the page are cut from the pixelated picture, never from the frame (the reviewer's thumbnail has a
margin that can hold part of a neighbour's face).

A picture of a candidate leaves the system, so each is an export: `exporting` (identify appends a
`candidate.export` audit record) is called before its file is written, and a picture whose record
the log refuses is not written.

The page is rendered by Jinja2 with autoescape on: file names, identities and camera ids are
text from outside. DIR is created for the owner only (0700), and so is each file (0600).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from facestream.commands.identify_summary import FrameCounts
from facestream.commands.output import candidate_json
from facestream.imaging import decode_jpeg, encode_jpeg
from facestream.messages import BBox, Candidate, Frame
from facestream.stages.tracks import iou
from facestream.vision.detector import FaceDetector

Image = npt.NDArray[np.uint8]

BLUR_SCORE = 0.3
"""Detector score from which a box is hidden: lower than any gate, so doubtful faces are hidden too
(a false box costs a pixelated patch of background)."""
SAME_FACE_IOU = 0.5
"""A box found again overlapping the candidate's this much is the candidate's face, left clear."""
BLOCKS = 6
"""A hidden face keeps this many blocks across: shape and colour, no features."""
MARGIN = 0.25
"""Hidden around each box, per side, as a share of its size: hair, ears, the detector's slack."""
THUMB_PX = 160


def hide(image: Image, box: BBox) -> None:
    """Pixelate the box and its margin in place, then smooth the block edges."""
    height, width = image.shape[:2]
    mx, my = MARGIN * box.width, MARGIN * box.height
    x1, y1 = max(0, int(box.x1 - mx)), max(0, int(box.y1 - my))
    x2, y2 = min(width, int(np.ceil(box.x2 + mx))), min(height, int(np.ceil(box.y2 + my)))
    if x2 <= x1 or y2 <= y1:
        return
    region = image[y1:y2, x1:x2]
    across = max(1, min(BLOCKS, x2 - x1))
    down = max(1, round(across * (y2 - y1) / (x2 - x1)))
    small = cv2.resize(region, (across, down), interpolation=cv2.INTER_AREA)
    blocks = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
    image[y1:y2, x1:x2] = cv2.GaussianBlur(blocks, (0, 0), max(1.0, (x2 - x1) / (4 * across)))


def draw(image: Image, box: BBox, label: str) -> None:
    """The candidate's box and `label` above it (below when the box touches the top)."""
    thickness = max(2, round(min(image.shape[:2]) / 300))
    x1, y1, x2, y2 = (round(v) for v in (box.x1, box.y1, box.x2, box.y2))
    green = (60, 200, 60)
    cv2.rectangle(image, (x1, y1), (x2, y2), green, thickness)
    scale = max(0.5, min(image.shape[:2]) / 800)
    text = label.encode("ascii", "replace").decode()  # Hershey fonts draw ASCII only
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = y1 - th - base - 4 if y1 - th - base - 4 >= 0 else y2
    cv2.rectangle(image, (x1, top), (x1 + tw + 6, top + th + base + 4), green, cv2.FILLED)
    cv2.putText(
        image,
        text,
        (x1 + 3, top + th + 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        thickness,
        cv2.LINE_AA,
    )


def picture(image: Image, candidate: Candidate, others: Sequence[BBox]) -> Image:
    """The frame with every face but the candidate's hidden, and the candidate's drawn."""
    out = image.copy()
    for box in others:
        hide(out, box)
    draw(out, candidate.bbox, f"{candidate.identity} {candidate.score:.2f}")
    return out


def thumbnail(image: Image, box: BBox) -> Image:
    """The candidate's face with some context, cut from the picture (its neighbours already hidden)."""
    height, width = image.shape[:2]
    margin = 0.6 * max(box.width, box.height)
    x1, y1 = max(0, int(box.x1 - margin)), max(0, int(box.y1 - margin))
    x2, y2 = min(width, int(box.x2 + margin)), min(height, int(box.y2 + margin))
    crop = image[y1:y2, x1:x2]
    scale = THUMB_PX / max(1, crop.shape[0])
    size = (max(1, round(crop.shape[1] * scale)), THUMB_PX)
    return np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), np.uint8)


def unusable(directory: Path) -> str | None:
    """Why DIR cannot take this run's pictures, if it cannot: it must be new or empty, so that a
    page never shows two runs."""
    if directory.exists() and not directory.is_dir():
        return "not a folder"
    if directory.is_dir() and any(directory.iterdir()):
        return "not empty; give a new or empty folder"
    return None


def prepare(directory: Path) -> Path:
    """DIR created (parents too) for the owner only."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    return directory


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


class Annotator:
    """A `CountingPipeline` watcher: pictures of each frame that opened candidates, rows for the page."""

    def __init__(
        self,
        directory: Path,
        detector: FaceDetector,
        *,
        max_pixels: int,
        media_offset_s: Callable[[Candidate], float | None],
        exporting: Callable[[Candidate, Path], object],
    ) -> None:
        self.directory = directory
        self._detector = detector
        self._max_pixels = max_pixels
        self._offset = media_offset_s
        self._exporting = exporting  # raises (AuditError) when the log refuses the record
        self.rows: list[dict[str, Any]] = []

    def frame_done(self, frame: Frame, counts: FrameCounts, found: list[Candidate]) -> None:
        mine = [c for c in found if c.ref.frame_id == frame.ref.frame_id]
        if not mine:
            return
        image = decode_jpeg(frame.jpeg, max_pixels=self._max_pixels)
        boxes = [d.bbox for d in self._detector.detect(image)] + [c.bbox for c in mine]
        for candidate in mine:
            others = [box for box in boxes if iou(box, candidate.bbox) < SAME_FACE_IOU]
            shown = picture(image, candidate, others)
            name = f"{candidate.candidate_id}.jpg"
            self._exporting(candidate, self.directory / name)  # audited first: no record, no picture
            _write(self.directory / name, encode_jpeg(shown, 90))
            _write(
                self.directory / f"{candidate.candidate_id}.thumb.jpg",
                encode_jpeg(thumbnail(shown, candidate.bbox), 85),
            )
            self.rows.append(
                {
                    **candidate_json(candidate),
                    "media_offset_s": self._offset(candidate),
                    "picture": name,
                    "thumbnail": f"{candidate.candidate_id}.thumb.jpg",
                }
            )

    def write_page(self, summary: str) -> Path:
        """index.html: the run's summary and every candidate's thumbnail, time and score."""
        from jinja2 import Environment

        from facestream.commands.identify_summary import clock

        environment = Environment(autoescape=True, keep_trailing_newline=True)
        environment.filters["clock"] = clock
        page = environment.from_string(PAGE).render(rows=self.rows, summary=summary)
        path = self.directory / "index.html"
        _write(path, page.encode())
        return path


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>facestream identify: {{ rows | length }} candidate{{ "" if rows | length == 1 else "s" }}</title>
<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ccc; padding: 0.4em 0.8em; text-align: left; vertical-align: middle; }
td.score, td.offset { font-variant-numeric: tabular-nums; }
pre { background: #f4f4f4; padding: 0.8em; white-space: pre-wrap; }
</style>
</head>
<body>
<h1>facestream identify: {{ rows | length }} candidate{{ "" if rows | length == 1 else "s" }}</h1>
<p>Candidates are not identifications: each needs two reviewers' confirmation. In each picture,
every face but the candidate's is pixelated.</p>
<table>
<thead><tr><th>picture</th><th>identity</th><th>score</th><th>source</th><th>frame time (UTC)</th>
<th>into the video</th><th>candidate</th></tr></thead>
<tbody>
{% for row in rows %}
<tr>
<td><a href="{{ row.picture }}"><img src="{{ row.thumbnail }}" alt="{{ row.identity }}" height="120"></a></td>
<td>{{ row.identity }}</td>
<td class="score">{{ "%.2f" | format(row.score) }}</td>
<td>{{ row.source }}</td>
<td>{{ row.frame_ts }}</td>
<td class="offset">{{ row.media_offset_s | clock if row.media_offset_s is not none else "" }}</td>
<td><code>{{ row.candidate_id }}</code></td>
</tr>
{% endfor %}
</tbody>
</table>
<h2>Run</h2>
<pre>{{ summary }}</pre>
</body>
</html>
"""
