"""The reviewers' workload: false candidates a day, from the false-match rate of the real pipeline.

Why: every candidate waits for two reviewers, so the false candidates a day, about
FMR x N enrolled identities x M faces searched, are what a city has to staff. This part measures
the false-match rate per comparison (FMR) at the shipped threshold (MatcherSettings.match_threshold)
from impostor scores, i.e. pairs of faces known to be different people, computed with the real
models through the real path (FaceFinder: detect, landmarks, align, quality gates; then the
embedder), over every face available here:

- ../shared/data/faces (enroll/, probe/, scenes/): identities from the file names and, in the
  three multi-person scenes, from position left to right (the same rules as tests/fixtures/media.py);
- the bundled sample (src/facestream/data/sample): its enroll/ crops, its group stills and the
  frames of camera.mp4, labelled by manifest.json.

An impostor pair is two faces whose identities are known to differ: different people by label,
or two different faces of one photo or frame. Nothing else is assumed.

The sample is made from the shared photos (scripts/make_sample.py), and scenes/obama_<res> are one
photograph at four sizes; a copy adds comparisons but no new evidence. So faces are grouped by the
photograph they come from, and a pair of photographs counts once ("independent pair"), scored by
the highest of its copies' scores (the conservative choice for impostors, the lowest for genuine
pairs). The sample size n of the FMR is the number of independent impostor pairs.

With k false matches out of n, the FMR's one-sided 95% upper bound is exact (Clopper-Pearson:
the p at which P(X <= k) = 0.05); with k = 0 it is 1 - 0.05^(1/n), about 3/n. A parametric tail
(a normal fitted to the impostor scores) extrapolates far beyond what n can show: it is labelled so.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

import facestream
from facestream.settings import (
    DetectorSettings,
    EmbedderSettings,
    GallerySettings,
    MatcherSettings,
    ModelSettings,
)
from facestream.vision.faces import FaceFinder, FaceObservation
from facestream.vision.factory import build_embedder, build_finder
from facestream.vision.models import fetch_builtin_models
from scalelab import Context

CONFIDENCE = 0.95
ENROLLED = (1_000, 10_000, 100_000, 1_000_000)
"""N: identities in the gallery (the table's rows)."""
FACES_A_DAY = (10_000, 100_000, 1_000_000)
"""M: faces searched a day (the table's columns)."""
REVIEW_SECONDS = 30
"""An assumed time for one reviewer to decide one candidate, to turn candidates into staff hours."""

# Labels of ../shared/data/faces, as in tests/fixtures/media.py (the load tests do not import tests/).
RESOLUTIONS = ("240p", "480p", "720p", "1080p")
SCENE_PEOPLE = {
    "obama_and_biden": ("biden", "obama", "person_behind_obama_and_biden"),
    "two_people": ("obama", "biden"),
    "kit_harington_and_rose_leslie": ("rose_leslie", "kit_harington"),
}
"""Who stands in each multi-person scene, left to right."""
SAME_PHOTOGRAPH = {
    **{f"scenes/obama_{res}.jpg:obama": "enroll/obama_1.jpg:obama" for res in RESOLUTIONS},
    "scenes/two_people.jpg:biden": "enroll/biden_1.jpg:biden",
}
"""Faces that are one photograph rescaled or cropped (docs/models.md), mapped to one name."""
SAMPLE_PEOPLE = {"bystander": "person_behind_obama_and_biden"}
"""The sample manifest's names that differ from the shared photos' labels."""


@dataclass(frozen=True)
class Face:
    identity: str
    photograph: str
    """The source photograph and person ('enroll/obama_1.jpg:obama'); copies share it."""
    where: str
    """Where this copy was found, for the report ('sample/camera.mp4@3.2s')."""
    aligned: np.ndarray


def run(ctx: Context) -> dict[str, Any]:
    models = ModelSettings(execution_provider="cpu")
    fetch_builtin_models(models.model_dir)
    finder = build_finder(DetectorSettings(), models)
    embedder = build_embedder(EmbedderSettings(), models)
    threshold = MatcherSettings().match_threshold
    top_k = MatcherSettings().top_k
    skipped: list[str] = []
    faces = shared_faces(finder, ctx.faces, skipped)
    sample = Path(facestream.__file__).parent / "data" / "sample"
    faces += sample_faces(finder, sample, ctx.repo, skipped, video_stride=5 if ctx.size == "smoke" else 1)
    vectors = embedder.embed(np.stack([f.aligned for f in faces]))
    pairs = score_pairs(faces, vectors)
    impostor = sorted(pairs["impostor"].values())
    genuine = sorted(pairs["genuine"].values())
    n, k = len(impostor), sum(s >= threshold for s in impostor)
    mean, sd = statistics.mean(impostor), statistics.stdev(impostor)
    units = len({f.photograph for f in faces})
    sd_upper = sd * math.sqrt((units - 1) / chi2_quantile(1 - CONFIDENCE, units - 1))
    fmr_upper = clopper_pearson_upper(k, n, CONFIDENCE)
    fmr_normal = normal_tail(threshold, mean, sd)
    fmr_normal_wide = normal_tail(threshold, mean, sd_upper)
    worst = max(pairs["impostor"].items(), key=lambda item: item[1])
    return {
        "threshold": threshold,
        "top_k": top_k,
        "faces": len(faces),
        "faces_shared": sum(not f.where.startswith("sample/") for f in faces),
        "faces_sample": sum(f.where.startswith("sample/") for f in faces),
        "photographs": units,
        "people": sorted({f.identity for f in faces}),
        "skipped": skipped,
        "impostor_comparisons": pairs["impostor_comparisons"],
        "genuine_comparisons": pairs["genuine_comparisons"],
        "same_photograph_comparisons": pairs["same_photograph_comparisons"],
        "impostor_pairs": n,
        "impostor_within_one_picture": pairs["impostor_within_one_picture"],
        "false_matches": k,
        "fmr_point": k / n,
        "fmr_upper_95": fmr_upper,
        "fmr_upper_95_if_comparisons_were_independent": clopper_pearson_upper(
            sum(s >= threshold for s in pairs["impostor_all_scores"]),
            pairs["impostor_comparisons"],
            CONFIDENCE,
        ),
        "impostor": {
            "max": worst[1],
            "max_pair": " vs ".join(sorted(worst[0])),
            "p99": float(np.percentile(impostor, 99)),
            "median": float(np.median(impostor)),
            "mean": mean,
            "sd": sd,
            "scores": [round(s, 4) for s in impostor],
        },
        "genuine": {
            "pairs": len(genuine),
            "min": min(genuine),
            "median": float(np.median(genuine)),
            "max": max(genuine),
            "below_threshold": sum(s < threshold for s in genuine),
            "scores": [round(s, 4) for s in genuine],
        },
        "parametric": {
            "assumption": "impostor scores normal with the sample's mean and sd",
            "z": (threshold - mean) / sd,
            "fmr": fmr_normal,
            "sd_upper_95": sd_upper,
            "fmr_sd_upper_95": fmr_normal_wide,
        },
        "false_candidates_per_day": {
            "empirical_upper_95": workload(fmr_upper, top_k),
            "parametric_normal": workload(fmr_normal, top_k),
            "parametric_normal_sd_upper_95": workload(fmr_normal_wide, top_k),
        },
        "review_seconds_assumed": REVIEW_SECONDS,
    }


# --- the faces -------------------------------------------------------------------------------


def read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read {path}")
    return np.asarray(image, np.uint8)


def labelled(finder: FaceFinder, image: np.ndarray, people: tuple[str, ...]) -> list[FaceObservation] | None:
    """The usable faces of a picture, left to right, if they can be labelled `people` by position.

    The pipeline's own gates first; if that gives more faces than people (the detector's false
    "face" in a painting behind enroll/biden_2.jpg), the enrollment gate of score >= 0.9.
    None when the count still differs or two faces overlap horizontally (no safe label).
    """
    found = [f for f in finder.find(image) if f.usable]
    if len(found) > len(people):
        found = [f for f in found if f.quality.det_score >= GallerySettings().enroll_min_score]
    if len(found) != len(people):
        return None
    found.sort(key=lambda f: (f.bbox.x1 + f.bbox.x2) / 2)
    if any(a.bbox.x2 >= b.bbox.x1 for a, b in itertools.pairwise(found)):
        return None
    return found


def shared_identity(photo: Path) -> tuple[str, ...]:
    stem = photo.stem
    if stem in SCENE_PEOPLE:
        return SCENE_PEOPLE[stem]
    if photo.parent.name == "enroll":
        return (stem.rsplit("_", 1)[0],)
    if stem.endswith("_unenrolled"):
        return (stem.removesuffix("_unenrolled"),)
    if stem.startswith("obama_") and stem.removeprefix("obama_") in RESOLUTIONS:
        return ("obama",)
    return (stem,)


def photograph_of(source: str, identity: str) -> str:
    name = f"{source}:{identity}"
    return SAME_PHOTOGRAPH.get(name, name)


def shared_faces(finder: FaceFinder, faces_dir: Path, skipped: list[str]) -> list[Face]:
    out = []
    for photo in sorted(faces_dir.glob("*/*.jpg")):
        source = f"{photo.parent.name}/{photo.name}"
        people = shared_identity(photo)
        found = labelled(finder, read(photo), people)
        if found is None:
            skipped.append(f"{source}: faces do not match {people}")
            continue
        for who, face in zip(people, found, strict=True):
            out.append(Face(who, photograph_of(source, who), source, face.aligned))
    return out


def _make_sample_module(repo: Path) -> ModuleType:
    """scripts/make_sample.py, for which shared photo each sample file was made from."""
    spec = importlib.util.spec_from_file_location("make_sample", repo / "scripts" / "make_sample.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample_faces(
    finder: FaceFinder, sample: Path, repo: Path, skipped: list[str], *, video_stride: int
) -> list[Face]:
    """The bundled sample's faces, each tied to the shared photograph it was cut from."""
    made = _make_sample_module(repo)
    manifest = json.loads((sample / "manifest.json").read_text())
    out = []
    for identity, files in manifest["enroll"].items():
        for name in files:
            found = labelled(finder, read(sample / name), (identity,))
            if found is None:
                skipped.append(f"sample/{name}: no single usable face")
                continue
            out.append(
                Face(
                    identity,
                    photograph_of(made.ENROLL[identity], identity),
                    f"sample/{name}",
                    found[0].aligned,
                )
            )
    for still in manifest["stills"]:
        people = tuple(SAMPLE_PEOPLE.get(p, p) for p in still["people"])
        source = made.STILLS[Path(still["file"]).name][0]
        found = labelled(finder, read(sample / still["file"]), people)
        if found is None:
            skipped.append(f"sample/{still['file']}: faces do not match {people}")
            continue
        for who, face in zip(people, found, strict=True):
            out.append(Face(who, photograph_of(source, who), f"sample/{still['file']}", face.aligned))
    video = manifest["video"]
    camera_source = dict(made.CAMERA)
    capture = cv2.VideoCapture(str(sample / video["file"]))
    fps = capture.get(cv2.CAP_PROP_FPS) or video["fps"]
    index, unlabelled = -1, 0
    while True:
        ok, frame = capture.read()
        index += 1
        if not ok:
            break
        if index % video_stride:
            continue
        at = index / fps
        # only frames well inside an appearance: the fades at its edges are not labelled
        present = [a for a in video["appearances"] if a["from_s"] + 0.2 <= at <= a["to_s"] - 0.2]
        if len(present) != 1:
            continue
        who = present[0]["person"]
        found = labelled(finder, np.asarray(frame, np.uint8), (who,))
        if found is None:
            unlabelled += 1
            continue
        out.append(
            Face(
                who,
                photograph_of(camera_source[who], who),
                f"sample/{video['file']}@{at:.1f}s",
                found[0].aligned,
            )
        )
    capture.release()
    if unlabelled:
        skipped.append(f"sample/{video['file']}: {unlabelled} frames without exactly one usable face")
    return out


# --- the pairs -------------------------------------------------------------------------------


def score_pairs(faces: list[Face], vectors: np.ndarray) -> dict[str, Any]:
    """Every pair of faces, grouped by the pair of photographs it compares."""
    impostor: dict[frozenset[str], float] = {}
    genuine: dict[frozenset[str], float] = {}
    within: set[frozenset[str]] = set()
    all_impostor: list[float] = []
    counts = {"impostor": 0, "genuine": 0, "same": 0}
    scores = vectors @ vectors.T
    for i, j in itertools.combinations(range(len(faces)), 2):
        a, b = faces[i], faces[j]
        score = float(scores[i, j])
        key = frozenset((a.photograph, b.photograph))
        if a.photograph == b.photograph:
            counts["same"] += 1  # one photograph twice: repeatability, not recognition
        elif a.identity != b.identity:
            counts["impostor"] += 1
            all_impostor.append(score)
            impostor[key] = max(score, impostor.get(key, -1.0))
            if a.where == b.where:
                within.add(key)
        else:
            counts["genuine"] += 1
            genuine[key] = min(score, genuine.get(key, 1.0))
    return {
        "impostor": impostor,
        "genuine": genuine,
        "impostor_all_scores": all_impostor,
        "impostor_comparisons": counts["impostor"],
        "genuine_comparisons": counts["genuine"],
        "same_photograph_comparisons": counts["same"],
        "impostor_within_one_picture": len(within),
    }


# --- the statistics --------------------------------------------------------------------------


def _log_binom_cdf(k: int, n: int, p: float) -> float:
    """log P(X <= k) for X ~ Binomial(n, p), 0 < p < 1."""
    terms = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
        for i in range(k + 1)
    ]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def clopper_pearson_upper(k: int, n: int, confidence: float) -> float:
    """Exact one-sided upper confidence bound of a binomial proportion (k successes in n)."""
    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    alpha = 1 - confidence
    if k == 0:
        return 1 - math.pow(alpha, 1 / n)
    lo, hi = k / n, 1.0
    for _ in range(200):  # bisection: P(X <= k; p) falls as p rises
        mid = (lo + hi) / 2
        if _log_binom_cdf(k, n, mid) > math.log(alpha):
            lo = mid
        else:
            hi = mid
    return hi


def normal_tail(threshold: float, mean: float, sd: float) -> float:
    """P(score >= threshold) for a normal(mean, sd)."""
    return 0.5 * math.erfc((threshold - mean) / (sd * math.sqrt(2)))


def chi2_quantile(p: float, dof: int) -> float:
    """The p-quantile of chi-square with `dof` degrees of freedom (Wilson-Hilferty, ~1% here)."""
    z = _normal_quantile(p)
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def _normal_quantile(p: float) -> float:
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def workload(fmr: float, top_k: int) -> dict[str, dict[str, Any]]:
    """Expected false candidates a day for each N and M: FMR x N x M.

    FMR x N is a face's expected false hits against N identities (while FMR x N << 1, also the
    chance that it raises one). The matcher returns at most top_k entries per face, so where
    FMR x N > top_k the figure is above what can happen (at most top_k x M): flagged `capped`.
    """
    out: dict[str, dict[str, Any]] = {}
    for n in ENROLLED:
        per_face = fmr * n
        out[str(n)] = {
            "per_face": per_face,
            "capped": per_face > top_k,
            **{str(m): m * per_face for m in FACES_A_DAY},
        }
    return out


# --- the report ------------------------------------------------------------------------------


def _count(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.1f}"
    if value >= 0.001:
        return f"{value:.3f}"
    return f"{value:.1e}"


def _table(title: str, table: dict[str, dict[str, Any]], top_k: int) -> list[str]:
    lines = [
        f"{title}",
        "",
        "| N enrolled \\ M faces a day | " + " | ".join(f"{m:,}" for m in FACES_A_DAY) + " |",
        "| --- |" + " --- |" * len(FACES_A_DAY),
    ]
    for n, row in table.items():
        mark = " †" if row["capped"] else ""
        cells = " | ".join(f"{_count(row[str(m)])}{mark}" for m in FACES_A_DAY)
        lines.append(f"| {int(n):,} | {cells} |")
    if any(row["capped"] for row in table.values()):
        lines += [
            "",
            f"† FMR x N > top_k: the matcher returns at most {top_k} entries per face, so at most "
            f"{top_k} x M.",
        ]
    return [*lines, ""]


def markdown(result: dict[str, Any]) -> list[str]:
    t, imp, gen, par = result["threshold"], result["impostor"], result["genuine"], result["parametric"]
    people = result["people"]
    hours = result["review_seconds_assumed"] * 2 / 3600
    lines = [
        "## Reviewers' workload: false matches at the shipped threshold",
        "",
        "**This is the figure a city needs to staff the two-person review**: every candidate, true or "
        "false, waits for two reviewers, and the false ones come at about FMR x N enrolled identities x "
        "M faces searched a day.",
        "",
        f"Real models and the real path (detect, landmarks, align, quality gates, embed), at the shipped "
        f"threshold `match_threshold` = {t} (cosine). Faces: {result['faces']} "
        f"({result['faces_shared']} in ../shared/data/faces, {result['faces_sample']} in the bundled sample: "
        f"its enroll crops, group stills and camera.mp4 frames), from {result['photographs']} distinct "
        f"photographs of **{len(people)} people** ({', '.join(people)}).",
        "",
        "Impostor pairs are pairs known to be different people: different labels, or two different faces "
        f"of one picture ({result['impostor_within_one_picture']} of them). The sample and the scenes' "
        "resized copies repeat the same photographs, so comparisons are grouped by the pair of "
        "photographs they compare and each group counts once, at its highest score.",
        "",
        f"- Impostor comparisons scored: {result['impostor_comparisons']:,}; **independent impostor pairs "
        f"n = {result['impostor_pairs']}**; false matches (score >= {t}): **k = {result['false_matches']}**.",
        f"- **FMR per comparison: {result['fmr_point']:.3g} observed; exact one-sided 95% upper bound "
        f"(Clopper-Pearson) {result['fmr_upper_95']:.3g}** (with k = 0 this is about 3/n). Counting every "
        f"comparison as independent, which they are not, would claim "
        f"{result['fmr_upper_95_if_comparisons_were_independent']:.3g}. The binomial treats pairs as "
        "independent trials; they share faces, so the true uncertainty is larger still.",
        f"- Impostor scores: max **{imp['max']:.3f}** ({imp['max_pair']}), p99 {imp['p99']:.3f}, "
        f"median {imp['median']:.3f}, mean {imp['mean']:.3f}, sd {imp['sd']:.3f}.",
        f"- Genuine pairs (same person, different photographs; lowest score over copies): "
        f"{gen['pairs']}, min {gen['min']:.3f}, median {gen['median']:.3f}, max {gen['max']:.3f}; "
        f"{gen['below_threshold']} below the threshold.",
        f"- Comparisons of one photograph with its own copy ({result['same_photograph_comparisons']}) are "
        "left out: they measure repeatability, not recognition.",
    ]
    if result["skipped"]:
        lines.append(f"- Not used (no safe label): {'; '.join(result['skipped'])}.")
    lines += [
        "",
        "Expected false candidates a day = FMR x N x M. M counts faces searched, every sampled face of "
        "every passer-by; the episode step merges repeated hits of one identity on one camera into one "
        "candidate, so the count of candidates lies between this table read with M = faces searched and "
        "with M = passers-by. Each candidate takes two reviews: at an assumed "
        f"{result['review_seconds_assumed']} s a review, 1,000 false candidates a day are "
        f"{1000 * hours:.1f} reviewer-hours a day.",
        "",
    ]
    lines += _table(
        f"**Measured bound**: FMR <= {result['fmr_upper_95']:.3g} (95% upper bound from n = "
        f"{result['impostor_pairs']}). This is all this data can show: it cannot rule out these numbers.",
        result["false_candidates_per_day"]["empirical_upper_95"],
        result["top_k"],
    )
    lines += _table(
        f"**Extrapolation, not a measurement**: assuming impostor scores are normal with the sample's mean "
        f"and sd, the threshold is z = {par['z']:.2f} sd above the mean, FMR = {par['fmr']:.2g}. Real "
        "impostor tails are usually heavier than normal (look-alikes, relatives, poor camera images), so "
        "this is likely an underestimate, and nothing in n pairs can check a tail this far out.",
        result["false_candidates_per_day"]["parametric_normal"],
        result["top_k"],
    )
    lines += _table(
        f"Same extrapolation with the sd at its 95% upper bound ({par['sd_upper_95']:.3f}, counting only the "
        f"{result['photographs']} photographs as independent): FMR = {par['fmr_sd_upper_95']:.2g}.",
        result["false_candidates_per_day"]["parametric_normal_sd_upper_95"],
        result["top_k"],
    )
    lines += [
        "Before sizing a review team on these figures, calibrate with the deployed model on thousands of "
        "people seen by the deployment's cameras (docs/models.md): an empirical bound of 1e-6 needs about "
        "3 million independent impostor pairs with no false match.",
        "",
    ]
    return lines


def plots(result: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imp, gen, par = result["impostor"]["scores"], result["genuine"]["scores"], result["parametric"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    bins = np.linspace(-0.4, 1.0, 57)
    left.hist(
        imp, bins=bins, alpha=0.7, label=f"impostor pairs (n={len(imp)})", color="tab:red", density=True
    )
    left.hist(
        gen, bins=bins, alpha=0.7, label=f"genuine pairs (n={len(gen)})", color="tab:green", density=True
    )
    xs = np.linspace(-0.4, 1.0, 400)
    mean, sd = result["impostor"]["mean"], result["impostor"]["sd"]
    left.plot(
        xs, np.exp(-0.5 * ((xs - mean) / sd) ** 2) / (sd * math.sqrt(2 * math.pi)), "k:", label="normal fit"
    )
    left.axvline(result["threshold"], color="k", linestyle="--", label=f"threshold {result['threshold']}")
    left.set_xlabel("cosine similarity")
    left.set_ylabel("density")
    left.set_title(f"Scores, independent pairs ({len(result['people'])} people)")
    left.legend(fontsize=8)
    table = result["false_candidates_per_day"]
    enrolled = [int(n) for n in table["empirical_upper_95"]]
    for m, colour in zip(
        (str(m) for m in FACES_A_DAY), ("tab:blue", "tab:orange", "tab:purple"), strict=True
    ):
        right.loglog(enrolled, [table["empirical_upper_95"][str(n)][m] for n in enrolled], "-o", color=colour,
                     label=f"M={int(m):,}/day, 95% bound (measured)")  # fmt: skip
        right.loglog(enrolled, [table["parametric_normal"][str(n)][m] for n in enrolled], "--", color=colour,
                     label=f"M={int(m):,}/day, normal tail (extrapolated)")  # fmt: skip
    right.set_xlabel("N enrolled identities")
    right.set_ylabel("expected false candidates a day")
    right.set_title(
        f"False candidates a day at threshold {result['threshold']} (FMR {par['fmr']:.1g} extrapolated)"
    )
    right.legend(fontsize=7)
    fig.tight_layout()
    path = out / "reviewer_scores_and_workload.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
