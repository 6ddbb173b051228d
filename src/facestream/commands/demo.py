"""`facestream demo`: the whole pipeline on the bundled sample, in seconds, on a fresh machine.

The demo runs the real commands in this process, in the order an operator would: grant an
authorisation, enroll the sample's watchlist under it, then `identify` over the sample
camera video and two group photos. stdout gets exactly what `identify` prints (one JSON
candidate per line); stderr gets a short summary checked against the sample's manifest:
who was enrolled, who was found where, and that the person never enrolled matched nothing.
The exit status is 1 when the result differs from what the manifest says should happen.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from facestream.cliargs import add_settings, flag, settings_from
from facestream.errors import ConfigError, FacestreamError
from facestream.settings import ModelSettings

CASE = "facestream-demo"
"""Case reference of the demo's authorisation; a kept `--gallery` reuses it while in force."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Appearance(_Frozen):
    person: str
    from_s: float
    to_s: float


class Video(_Frozen):
    file: str
    fps: float
    appearances: tuple[Appearance, ...]


class Still(_Frozen):
    file: str
    people: tuple[str, ...]


class Manifest(_Frozen):
    """data/sample/manifest.json, written by scripts/make_sample.py: who is where."""

    about: str = ""
    enroll: dict[str, tuple[str, ...]]
    video: Video
    stills: tuple[Still, ...]
    unenrolled: tuple[str, ...]

    def sources(self, root: Path) -> dict[str, tuple[str, ...]]:
        """Each source's path -> the people in it."""
        out = {str(root / self.video.file): tuple(a.person for a in self.video.appearances)}
        out.update({str(root / s.file): s.people for s in self.stills})
        return out


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the embedded pipeline on the bundled sample (a few seconds)",
        description="Enroll the bundled watchlist photos into a temporary gallery under a demo "
        "authorisation, run `identify` over the bundled camera video and photos, print the "
        "candidates as JSON lines and a summary on stderr. Needs the models (`facestream models "
        "fetch`), nothing else.",
    )
    p.add_argument(
        "--gallery",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep the demo's gallery and accountability state in DIR (default: a temporary "
        "directory, removed afterwards)",
    )
    p.add_argument("--verbose", action="store_true", help="show the commands' log records on stderr")
    add_settings(p, ModelSettings)
    p.set_defaults(handler=run)


def sample_dir() -> Path:
    path = Path(str(resources.files("facestream") / "data" / "sample"))
    if not (path / "manifest.json").is_file():
        raise ConfigError(f"the bundled sample is missing from this installation (looked in {path})")
    return path


def load_manifest(root: Path) -> Manifest:
    try:
        return Manifest.model_validate_json((root / "manifest.json").read_bytes())
    except (OSError, ValidationError) as exc:
        raise ConfigError(f"bundled sample manifest is unreadable: {exc}") from None


def run(args: argparse.Namespace) -> int:
    root = sample_dir()
    manifest = load_manifest(root)
    model_flags = _model_flags(args)
    if not args.verbose:
        logging.getLogger("facestream").setLevel(logging.ERROR)
    with _gallery_dir(args.gallery) as gallery:
        auth = _authorisation(gallery)
        for identity, photos in manifest.enroll.items():
            _facestream(
                "gallery", "enroll", "--gallery", gallery, "--authorisation", auth,
                "--identity", identity, *(str(root / p) for p in photos), *model_flags,
            )  # fmt: skip
        sources = manifest.sources(root)
        found = _facestream("identify", "--gallery", gallery, *sources, *model_flags)
    sys.stdout.write(found)
    sys.stdout.flush()
    candidates = [json.loads(line) for line in found.splitlines()]
    ok = summarise(manifest, sources, candidates, auth=auth, kept=args.gallery)
    return 0 if ok else 1


def summarise(
    manifest: Manifest,
    sources: dict[str, tuple[str, ...]],
    candidates: Sequence[dict[str, Any]],
    *,
    auth: str,
    kept: Path | None,
) -> bool:
    """Write the human summary to stderr; True when every source gave exactly what it should."""
    say = sys.stderr.write
    enrolled = sorted(manifest.enroll)
    say(f"facestream demo: enrolled {', '.join(enrolled)} under authorisation {auth}\n")
    ok = True
    for source, people in sources.items():
        expected = sorted(p for p in people if p in manifest.enroll)
        hits = [c for c in candidates if c["source"] == source]
        got = sorted(str(c["identity"]) for c in hits)
        found = ", ".join(f"{c['identity']} ({c['score']:.2f})" for c in hits) or "nobody"
        never = [p for p in people if p in manifest.unenrolled]
        note = f"; {', '.join(never)} (not enrolled): no match" if never and got == expected else ""
        verdict = "as expected" if got == expected else f"UNEXPECTED, should be {', '.join(expected)}"
        ok &= got == expected
        say(f"  {Path(source).name}: {found}{note} - {verdict}\n")
    if ok:
        say(
            f"facestream demo: {len(candidates)} candidates, one per person, source and episode; "
            f"nobody who is not enrolled ({', '.join(manifest.unenrolled)}) produced anything\n"
        )
    else:
        say("facestream demo: the result differs from what the sample's manifest says (see above)\n")
    where = f"kept at {kept}" if kept else "removed"
    say(f"facestream demo: gallery and its accountability state (authorisation, audit log) {where}\n")
    return ok


def _authorisation(gallery: str) -> str:
    """The demo authorisation in force in this gallery, granted if there is none."""
    listed = _facestream("authorisation", "list", "--active", "--gallery", gallery)
    for line in listed.splitlines():
        auth = json.loads(line)
        if auth.get("case_ref") == CASE:
            return str(auth["id"])
    until = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    granted = _facestream(
        "authorisation", "grant", "--gallery", gallery, "--case", CASE,
        "--basis", "demonstration on the bundled sample photos", "--purpose", "missing",
        "--issued-by", "facestream demo", "--valid-until", until,
    )  # fmt: skip
    return str(json.loads(granted)["id"])


def _facestream(*argv: str) -> str:
    """Run a facestream command in this process and return what it printed on stdout.

    A failing command exits (one line on stderr, its status), which ends the demo with it.
    """
    from facestream.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(argv))
    if status != 0:
        raise FacestreamError(f"`facestream {' '.join(argv[:2])}` exited with status {status}")
    return out.getvalue()


def _model_flags(args: argparse.Namespace) -> list[str]:
    """The demo's model settings as resolved here (flags > environment > its --config file >
    defaults), passed on to each command as flags: the commands run in this process but parse
    their own arguments, so a settings file given to the demo would not reach them otherwise."""
    settings = settings_from(args, ModelSettings)
    return [
        part for name in ModelSettings.model_fields for part in (flag(name), str(getattr(settings, name)))
    ]


@contextlib.contextmanager
def _gallery_dir(kept: Path | None) -> Iterator[str]:
    if kept is not None:
        yield str(kept)
        return
    with tempfile.TemporaryDirectory(prefix="facestream-demo-") as tmp:
        gallery = Path(tmp) / "gallery"
        try:
            yield str(gallery)
        finally:
            _release_lite(gallery)


def _release_lite(gallery: Path) -> None:
    """Stop this process's Milvus Lite server for the gallery before its directory is removed
    (Milvus Lite keeps one per directory until the process exits)."""
    with contextlib.suppress(ImportError):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(gallery / "milvus.db"))
