"""Package discovery that pyproject.toml cannot express: `frontend/` ships as `linkops.frontend`."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["linkops", "linkops.*"]), "linkops.frontend"],
    package_dir={"linkops.frontend": "frontend"},
)
