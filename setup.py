"""Package discovery for the three roots in pyproject.toml's package-dir (src/facestream,
services/, schemas/): a hand-kept list dropped every new subpackage from the wheel silently.
Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

ROOTS = {"facestream": "src/facestream", "facestream.services": "services", "facestream.schemas": "schemas"}

packages: list[str] = []
for name, root in ROOTS.items():
    packages += [name, *(f"{name}.{sub}" for sub in find_packages(root))]

setup(packages=packages)
