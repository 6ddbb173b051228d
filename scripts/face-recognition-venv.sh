#!/usr/bin/env bash
# A virtual environment with face_recognition (dlib) for load-tests/compare_face_recognition.py,
# the issue 10 comparison. Kept apart from the project's .venv: it is the baseline we measure
# against, never a dependency, and dlib must not be built from source.
#
#   dlib-bin                 prebuilt wheel that provides the `dlib` module
#   face_recognition         installed with --no-deps (its `dlib` requirement would build dlib)
#   face_recognition_models  dlib's HOG, landmark and ResNet models (a ~100 MB sdist)
#   numpy, Pillow            what face_recognition's API imports (Click is only for its CLI)
#   setuptools < 81          face_recognition_models finds its files with pkg_resources
#
# Idempotent and cached under ${FACESTREAM_CACHE:-$HOME/.cache/facestream}/face-recognition-venv:
# when the venv holds exactly these versions a second run only checks them (a second).
# The first run downloads ~110 MB from PyPI and builds the models' sdist (a minute or two).
#
#   scripts/face-recognition-venv.sh [install]   create or complete the venv
#   scripts/face-recognition-venv.sh env         install, then print FACE_RECOGNITION_PYTHON=
set -euo pipefail

DLIB_BIN_VERSION=20.0.1.post1
FACE_RECOGNITION_VERSION=1.3.0
FACE_RECOGNITION_MODELS_VERSION=0.3.0
NUMPY_VERSION=2.4.6
PILLOW_VERSION=13.0.0
SETUPTOOLS_VERSION=75.8.2

CACHE="${FACESTREAM_CACHE:-$HOME/.cache/facestream}"
VENV="$CACHE/face-recognition-venv"
PY="$VENV/bin/python"
STAMP="dlib-bin $DLIB_BIN_VERSION, face_recognition $FACE_RECOGNITION_VERSION, \
face_recognition_models $FACE_RECOGNITION_MODELS_VERSION, numpy $NUMPY_VERSION, Pillow $PILLOW_VERSION, \
setuptools $SETUPTOOLS_VERSION"

log() { echo "face-recognition-venv: $*" >&2; }
die() { echo "face-recognition-venv: error: $*" >&2; exit 1; }

base_python() {
  # The project's Python (3.11), so both sides of the comparison run the same interpreter.
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null; then command -v "$candidate"; return; fi
  done
  die "no python3 found"
}

works() {
  [[ -x "$PY" && "$(cat "$VENV/VERSIONS" 2>/dev/null)" == "$STAMP" ]] \
    && "$PY" -c 'import dlib, face_recognition, face_recognition_models' 2>/dev/null
}

install() {
  if works; then return; fi
  mkdir -p "$CACHE"
  # One installer at a time (a benchmark and a developer may call this together).
  exec 9>"$CACHE/.face-recognition-venv.lock"
  command -v flock >/dev/null && flock 9
  if works; then return; fi
  log "creating $VENV ($STAMP)"
  [[ -x "$PY" ]] || "$(base_python)" -m venv "$VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check \
    "setuptools==$SETUPTOOLS_VERSION" "numpy==$NUMPY_VERSION" "Pillow==$PILLOW_VERSION" \
    "dlib-bin==$DLIB_BIN_VERSION" "face_recognition_models==$FACE_RECOGNITION_MODELS_VERSION"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps \
    "face_recognition==$FACE_RECOGNITION_VERSION"
  "$PY" -c 'import dlib, face_recognition, face_recognition_models' \
    || die "face_recognition does not import in $VENV"
  echo "$STAMP" >"$VENV/VERSIONS"
}

case "${1:-install}" in
  install) install ;;
  env)
    install
    echo "FACE_RECOGNITION_PYTHON=$PY"
    ;;
  *) die "usage: $0 [install|env]" ;;
esac
# face_recognition 1.3.0 still says 1.2.3 in its __version__: report what pip installed.
log "$("$PY" -c 'from importlib.metadata import version as v; print(", ".join(f"{p} {v(p)}" for p in ("dlib-bin", "face_recognition", "face_recognition_models")))')"
