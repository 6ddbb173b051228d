"""Model files: the built-in defaults, how they are fetched, and checksum verification.

No model hub is reachable from where facestream is built, so the defaults come from a
registry package (the npm package `faceplugin-face-recognition-js@0.0.1`, see
docs/models.md for provenance and licence caveats). Only the three models facestream uses
are extracted; the package also ships age, gender, expression and liveness models, which
are never unpacked, because facestream does no such inference.

Any other ONNX model can be configured by path; a path must come with its sha256, so a
swapped or corrupted file is refused rather than silently used.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import tarfile
import tempfile
import unicodedata
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from facestream.errors import ConfigError, ModelError

NPM_REGISTRY = os.environ.get("FACESTREAM_NPM_REGISTRY", "https://registry.npmjs.org")


@dataclass(frozen=True, slots=True)
class PackageSpec:
    """An npm tarball, pinned by the registry's own sha512 integrity string."""

    name: str
    version: str
    integrity: str

    @property
    def url(self) -> str:
        base = self.name.split("/")[-1]
        return f"{NPM_REGISTRY}/{self.name}/-/{base}-{self.version}.tgz"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A built-in model: which file of which package, and the sha256 it must have."""

    name: str
    package: PackageSpec
    member: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.name}.onnx"


FACEPLUGIN = PackageSpec(
    name="faceplugin-face-recognition-js",
    version="0.0.1",
    integrity=(
        "sha512-shriXjd4zJHEwhK1jHK+bWo8Vv6Vu9B/w6RRsd4AFtNM/jaI2vhuOamOSMl9qQmLd8WlQ7dgqN+3C2iOi5pXWw=="
    ),
)

BUILTIN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="ultraface-rfb320",
            package=FACEPLUGIN,
            member="package/model/fr_detect.onnx",
            sha256="6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
        ),
        ModelSpec(
            name="pfld68-64",
            package=FACEPLUGIN,
            member="package/model/fr_landmark.onnx",
            sha256="f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
        ),
        ModelSpec(
            name="mobilefacenet-arcface-512",
            package=FACEPLUGIN,
            member="package/model/fr_feature.onnx",
            sha256="87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
        ),
    )
}


def default_model_dir() -> Path:
    env = os.environ.get("FACESTREAM_MODEL_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facestream" / "models"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verify_integrity(data: bytes, integrity: str) -> None:
    algo, _, expected = integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if actual != expected:
        raise ModelError(f"downloaded package fails its {algo} integrity check")


def _download(url: str, timeout_s: float = 120.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bytes(response.read())
    except OSError as exc:
        raise ModelError(f"cannot download {url}: {exc}") from exc


def fetch_builtin_models(model_dir: Path | None = None, *, force: bool = False) -> list[Path]:
    """Download, verify and unpack the built-in models; a no-op for files already verified."""
    target = model_dir or default_model_dir()
    target.mkdir(parents=True, exist_ok=True)
    missing = [
        spec
        for spec in BUILTIN_MODELS.values()
        if force or not _is_verified(target / spec.filename, spec.sha256)
    ]
    by_package: dict[PackageSpec, list[ModelSpec]] = {}
    for spec in missing:
        by_package.setdefault(spec.package, []).append(spec)
    for package, specs in by_package.items():
        tarball = _download(package.url)
        _verify_integrity(tarball, package.integrity)
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            for spec in specs:
                member = archive.extractfile(spec.member)
                if member is None:
                    raise ModelError(f"{package.name} has no {spec.member}")
                data = member.read()
                if sha256_of(data) != spec.sha256:
                    raise ModelError(f"{spec.member} in {package.name} fails its sha256 check")
                _atomic_write(target / spec.filename, data)
    return [target / spec.filename for spec in BUILTIN_MODELS.values()]


def _is_verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path.read_bytes()) == sha256


def _atomic_write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """Verified model bytes plus an id that names exactly these weights."""

    model_id: str
    data: bytes


def load_model(ref: str, sha256: str | None = None, model_dir: Path | None = None) -> LoadedModel:
    """Resolve a built-in name or a file path to verified bytes.

    A built-in name is checked against its pinned sha256; a path needs `sha256` from the
    operator. The model id is `<name>@<sha256 prefix>` (`model_id_for`), so vectors from
    different weights are never compared with each other.
    """
    spec = BUILTIN_MODELS.get(ref)
    if spec is not None:
        path = (model_dir or default_model_dir()) / spec.filename
        expected = sha256 or spec.sha256
        if not path.is_file():
            raise ModelError(
                f"model {ref!r} is not fetched yet: run `facestream models fetch` (looked in {path.parent})"
            )
        name = spec.name
    else:
        path = Path(ref)
        if not path.is_file():
            known = ", ".join(sorted(BUILTIN_MODELS))
            raise ConfigError(f"model {ref!r} is neither a built-in model ({known}) nor a file")
        if not sha256:
            raise ConfigError(f"model file {ref} needs its sha256 (set the matching *_sha256 option)")
        expected = sha256
        name = path.stem
    data = path.read_bytes()
    actual = sha256_of(data)
    if actual != expected.lower():
        raise ModelError(f"model {ref!r} fails its checksum: sha256 {actual}, expected {expected}")
    return LoadedModel(model_id=model_id_for(name, actual), data=data)


_KEPT_NAME = re.compile(r"[A-Za-z0-9_.@:\-]{1,115}")
"""Names used in model ids as they are: the gallery filter's alphabet (gallery/store.py), short
enough that the id fits the 128 characters of the gallery's model_id column."""
_ID_NAME_LENGTH = 64
_NOT_ID_NAME = re.compile(r"[^A-Za-z0-9_.\-]+")


def model_id_for(name: str, sha256: str) -> str:
    """`<name>@<first 12 hex digits of sha256>`, always writable into a gallery filter.

    The id is a string literal in every gallery search, and the filter takes ids only from an
    alphabet, unescaped (gallery/store.py says why: the Milvus backends escape differently). So
    the name part is made to fit rather than the filter made to escape: a name already in the
    alphabet (every built-in one, and any file name that worked before) is kept as it is, so
    existing galleries' entries keep matching; any other ("arcface r50 (licensed)") becomes its
    ASCII letters, digits, `_ . -` with every other run turned into one `-`, at most 64 of them
    ("arcface-r50-licensed"). The sha256 prefix, not the name, tells weights apart, so two
    names that normalise alike name the same model only if they are the same weights."""
    if _KEPT_NAME.fullmatch(name):
        return f"{name}@{sha256[:12].lower()}"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = _NOT_ID_NAME.sub("-", ascii_name).strip("-.")[:_ID_NAME_LENGTH].rstrip("-.")
    return f"{cleaned or 'model'}@{sha256[:12].lower()}"
