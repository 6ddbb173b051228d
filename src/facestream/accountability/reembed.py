"""Re-embedding: the one use the kept enrollment photos have.

When the embedding model changes, old vectors cannot be compared with new ones (the search
filters on model_id), so each entry in force is enrolled again from its decrypted photo with
the new model, under the same identity and authorisation, and audited as `gallery.enroll`
with `reembed: true`. Photos of ended authorisations were purged and are not brought back.
A model with another vector size needs a new collection (`--collection`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from facestream.accountability.audit import Actor, AuditLog
from facestream.accountability.authorisations import AuthorisationStore
from facestream.accountability.clock import now_ms
from facestream.accountability.erasures import ErasureRecord, RecordedErasures
from facestream.accountability.photos import PhotoVault, load_photo_key
from facestream.accountability.purge import erase_photos_of
from facestream.accountability.roles import RoleStore
from facestream.accountability.settings import PhotoSettings
from facestream.errors import EnrollmentRefused
from facestream.gallery.enroll import Enroller
from facestream.gallery.store import Gallery
from facestream.settings import GallerySettings
from facestream.vision.embedder import FaceEmbedder
from facestream.vision.faces import FaceFinder


def reembed(
    state_dir: Path,
    gallery: Gallery,
    finder: FaceFinder,
    embedder: FaceEmbedder,
    settings: GallerySettings,
    *,
    photo_settings: PhotoSettings,
    audit: AuditLog,
    actor: Actor,
    drop_old: bool,
) -> dict[str, Any]:
    key = load_photo_key(photo_settings, state_dir, single_operator=RoleStore(state_dir).single_operator())
    vault = PhotoVault(state_dir, key)
    enroller = Enroller(finder, embedder, gallery, settings)
    at = now_ms()
    summary: dict[str, Any] = {"model_id": embedder.model_id, "reembedded": 0, "refused": [], "dropped": 0}
    for auth in AuthorisationStore(state_dir).all().values():
        if not auth.in_force_at(at):
            continue
        old = [e for e in gallery.entries_of_authorisation(auth.id) if e.model_id != embedder.model_id]
        photos: dict[str, set[str]] = defaultdict(set)
        for entry in old:
            photos[entry.identity].add(entry.photo_id)
        for identity, photo_ids in sorted(photos.items()):
            new_ids: list[str] = []
            for photo_id in sorted(photo_ids):
                try:
                    result = enroller.enroll_images(
                        identity,
                        [(photo_id, vault.get(auth.id, photo_id))],
                        authorisation_id=auth.id,
                        valid_until_ms=auth.valid_until_ms,
                    )
                except (EnrollmentRefused, FileNotFoundError) as exc:
                    summary["refused"].append(
                        {"authorisation_id": auth.id, "photo_id": photo_id, "why": str(exc)}
                    )
                    continue
                new_ids.extend(p.entry_id for p in result.photos)
            if new_ids:
                audit.append(
                    actor=actor,
                    action="gallery.enroll",
                    authorisation_id=auth.id,
                    objects={"identity": identity, "entries": new_ids, "reembed": True},
                )
                summary["reembedded"] += len(new_ids)
        if drop_old and old:
            ids = [e.entry_id for e in old]
            record = ErasureRecord(
                "gallery.remove", tuple(ids), auth.id, {"entries": ids, "reason": "model-replaced"}
            )
            removed = RecordedErasures(state_dir, audit).erase(gallery, actor, [record])
            # Photos stay: the new entries use the same photo ids.
            erase_photos_of(state_dir, removed, gallery)
            summary["dropped"] += len(removed)
    return summary
