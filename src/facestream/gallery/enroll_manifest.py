"""A manifest to enroll in bulk: a CSV file of `identity,photo` rows, for photos that are not kept
in a folder per person (a case system's export, photos named by reference number).

Why beside the folder layout (gallery/enroll_folder.py): CompreFace's users ask to import from such
lists (#1299) as much as from folders, and renaming thousands of files into folders by hand is where
photos get attached to the wrong person. The file says which photo is whose, in one place an
officer can check before running.

Format: UTF-8 (a spreadsheet's byte-order mark is fine), a header naming the columns `identity` and
`photo` (others are ignored), one row per photo; an identity's rows need not be together; a
relative photo path is relative to the manifest's folder. A file that is not such a table is one
line naming the file and line, before anything else happens. An identity whose name is not an
identity, or one of whose photos is missing or not a photo, is refused with the reason and the
rest go ahead, as in a folder.
"""

from __future__ import annotations

import csv
from pathlib import Path

from facestream.errors import ConfigError
from facestream.gallery.enroll_folder import PHOTO_SUFFIXES, BulkIdentity

COLUMNS = ("identity", "photo")
MAX_BYTES = 64 * 1024 * 1024
"""Far above any watchlist's list (a million rows of ~60 bytes); a bigger file is a mistake."""


def identities_listed(manifest: Path) -> list[BulkIdentity]:
    """The identities of a manifest, in the order of their first row; ConfigError (one line) when
    the file is not a manifest."""
    try:
        if manifest.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{manifest}: over {MAX_BYTES // 2**20} MiB; not a manifest")
        text = manifest.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{manifest}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{manifest} is a folder: give it as FOLDER, not --manifest") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{manifest}: not UTF-8 text (expected a CSV file)") from None
    except OSError as exc:  # unreadable: permissions, a broken device
        raise ConfigError(f"{manifest}: cannot be read ({exc.strerror or exc})") from None
    rows = csv.reader(text.splitlines())
    header = [name.strip().lower() for name in next(rows, [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        names, absent = ", ".join(COLUMNS), ", ".join(missing)
        raise ConfigError(f"{manifest}:1: the header must name the columns {names} (missing: {absent})")
    at = {c: header.index(c) for c in COLUMNS}
    photos: dict[str, list[Path]] = {}
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        cells = {c: row[i].strip() if i < len(row) else "" for c, i in at.items()}
        empty = [c for c in COLUMNS if not cells[c]]
        if empty:
            raise ConfigError(f"{manifest}:{line}: no {' and no '.join(empty)}")
        photo = Path(cells["photo"])
        listed = photos.setdefault(cells["identity"], [])
        path = photo if photo.is_absolute() else manifest.parent / photo
        if path not in listed:
            listed.append(path)
    if not photos:
        raise ConfigError(f"{manifest}: no rows after the header")
    return [_checked(identity, tuple(paths)) for identity, paths in photos.items()]


def _checked(identity: str, photos: tuple[Path, ...]) -> BulkIdentity:
    person = BulkIdentity(identity, photos).checked()
    if person.why_not is not None:
        return person
    for photo in photos:
        if photo.suffix.lower() not in PHOTO_SUFFIXES:
            return person.refused(f"photo {photo}: not a photo ({', '.join(PHOTO_SUFFIXES)})")
        if not photo.is_file():
            return person.refused(f"photo {photo}: not found")
    return person
