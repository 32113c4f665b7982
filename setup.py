"""Package discovery that pyproject.toml cannot express: `frontend/` and `examples/` ship
as `linkops.frontend` and `linkops.examples` (see linkops/resources.py)."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["linkops", "linkops.*"]),
        "linkops.frontend",
        "linkops.examples",
    ],
    package_dir={"linkops.frontend": "frontend", "linkops.examples": "examples"},
)
