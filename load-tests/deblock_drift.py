"""What skipping H.264's deblocking filter between key frames would save, and what it costs the faces.

Why: with a GOP longer than the sampling interval the sampler decodes every frame from the key
frame up to a sample (issue 10), and the in-loop deblocking filter is a large share of a P-frame's
decode. FFmpeg can skip it on all but key frames (`skip_loop_filter=nokey`), but a skipped filter
changes the reference pictures, so the error drifts further with every frame until the next key
frame. This measures both sides on the same 720p 25 fps H.264 file per GOP (scalelab/media.py,
libx264 veryfast, no B-frames): decode CPU per frame (`time.process_time()`, one decoder thread,
median of --repeat alternated runs) with the filter and without it on non-key frames, and at every
1 fps sample: PSNR against the filtered picture, and the cosine between the embeddings of each
usable face on both pictures (paired by box overlap; facestream's default detector, landmarks and
embedder), and how many faces only one of the two pictures gave. The yardstick for the cosine: the
same faces on the filtered picture one frame (40 ms) later.

    .venv/bin/python load-tests/deblock_drift.py [--seconds 20] [--gops 1,2,4,10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scalelab.media import make_h264_video

from facestream.messages import BBox
from facestream.settings import DetectorSettings, EmbedderSettings, ModelSettings
from facestream.stages.tracks import iou
from facestream.vision.factory import build_embedder, build_finder

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("probe/obama.jpg", "scenes/two_people.jpg", "scenes/obama_and_biden.jpg")
FPS = 25


def decode(path: Path, skip: str | None) -> tuple[float, list[npt.NDArray[np.uint8]]]:
    """(CPU s per frame, the pictures) of decoding the whole file, the filter skipped per `skip`."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        if skip is not None:
            stream.codec_context.options = {"skip_loop_filter": skip}  # applied when the codec opens
        cpu = time.process_time()
        frames = list(container.decode(stream))
        used = time.process_time() - cpu
        return used / len(frames), [np.asarray(f.to_ndarray(format="bgr24"), dtype=np.uint8) for f in frames]


def measure(path: Path, gop_frames: int, repeat: int) -> dict[str, Any]:
    cpu: dict[str, list[float]] = {"filtered": [], "nokey": []}
    pictures: dict[str, list[npt.NDArray[np.uint8]]] = {}
    for _ in range(repeat):
        for name, skip in (("filtered", None), ("nokey", "nokey")):
            per_frame, pictures[name] = decode(path, skip)
            cpu[name].append(per_frame)
    models = ModelSettings()
    finder, embedder = build_finder(DetectorSettings(), models), build_embedder(EmbedderSettings(), models)

    def faces(picture: npt.NDArray[np.uint8]) -> list[tuple[BBox, npt.NDArray[np.float32]]]:
        usable = [o for o in finder.find(picture) if o.usable]
        out = []
        for o in usable:
            vector = embedder.embed(o.aligned[None])[0]
            out.append((o.bbox, np.asarray(vector / np.linalg.norm(vector), dtype=np.float32)))
        return out

    def paired(
        a: list[tuple[BBox, npt.NDArray[np.float32]]], b: list[tuple[BBox, npt.NDArray[np.float32]]]
    ) -> list[float]:
        """The cosine of each face of `a` with the same face in `b`: the box overlapping it most, at
        least half (faces without one are left out)."""
        out = []
        for box, vector in a:
            overlap, other = max(((iou(box, c), v) for c, v in b), default=(0.0, None), key=lambda t: t[0])
            if other is not None and overlap >= 0.5:
                out.append(float(vector @ other))
        return out

    samples: list[dict[str, Any]] = []
    yardstick: list[float] = []
    psnrs: list[float] = []  # between key frames only
    cosines: list[float] = []
    one_side = 0
    for i in range(0, len(pictures["filtered"]), FPS):
        filtered, skipped = faces(pictures["filtered"][i]), faces(pictures["nokey"][i])
        psnr = float(cv2.PSNR(pictures["filtered"][i], pictures["nokey"][i]))
        pairs = paired(filtered, skipped)
        one_side += len(filtered) + len(skipped) - 2 * len(pairs)
        # the yardstick: the same faces, filtered, one frame (40 ms) later
        after = (
            paired(filtered, faces(pictures["filtered"][i + 1])) if i + 1 < len(pictures["filtered"]) else []
        )
        if i % gop_frames:
            psnrs.append(psnr)
            cosines.extend(pairs)
            yardstick.extend(after)
        samples.append(
            {
                "frames_since_key": i % gop_frames,
                "psnr_db": round(psnr, 1),
                "cosines": pairs,
                "next_frame": after,
            }
        )
    return {
        "gop_frames": gop_frames,
        "decode_ms_per_frame_filtered": round(1000 * statistics.median(cpu["filtered"]), 3),
        "decode_ms_per_frame_nokey": round(1000 * statistics.median(cpu["nokey"]), 3),
        "min_psnr_db_between_keys": round(min(psnrs), 1) if psnrs else None,
        "min_cosine_between_keys": round(min(cosines), 4) if cosines else None,
        "min_cosine_next_frame_filtered": round(min(yardstick), 4) if yardstick else None,
        "found_on_one_side_only": one_side,
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--gops", default="1,2,4,10", help="GOP lengths in seconds, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--faces", type=Path, default=REPO.parent / "shared" / "data" / "faces")
    args = parser.parse_args()
    try:
        gops = [float(g) for g in args.gops.split(",")]
    except ValueError:
        parser.error(f"--gops: not a list of numbers: {args.gops!r}")
    photos = [args.faces / p for p in PHOTOS]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for gop in gops:
            path = Path(tmp) / f"gop{gop:g}.mp4"
            media = make_h264_video(photos, path, seconds=args.seconds, gop_s=gop)
            rows.append({"gop_s": gop, **measure(path, media.gop_frames, args.repeat)})
    print(
        "| GOP | decode ms/frame, filtered | nokey | ratio | min PSNR between keys | min face cosine "
        "| same face, filtered, 40 ms later | found on one side only |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ratio = r["decode_ms_per_frame_nokey"] / r["decode_ms_per_frame_filtered"]
        print(
            f"| {r['gop_s']:g} s | {r['decode_ms_per_frame_filtered']} | {r['decode_ms_per_frame_nokey']} | "
            f"{ratio:.2f} | {r['min_psnr_db_between_keys']} dB | {r['min_cosine_between_keys']} | "
            f"{r['min_cosine_next_frame_filtered']} | {r['found_on_one_side_only']} |"
        )
    reports = REPO / "load-tests" / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = reports / f"deblock-drift-{stamp}.json"
    out.write_text(json.dumps({"seconds": args.seconds, "repeat": args.repeat, "rows": rows}, indent=2))
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
