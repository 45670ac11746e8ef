"""Package discovery (everything else is in pyproject.toml).

The registry's packages are found, not listed: every folder under ``registry/``, ``etl/`` and ``jobs/``
(data and template folders included, as namespace packages, so their files ship as package
data). The top-level ``migrations/`` folder ships inside the wheel as ``registry_migrations``
so an installed ``registry db upgrade`` finds it.
"""

from setuptools import find_namespace_packages, setup

_SKIP = ["*.__pycache__", "*.egg-info"]
_CODE = find_namespace_packages(
    include=["registry", "registry.*", "etl", "etl.*", "jobs", "jobs.*"], exclude=_SKIP
)
_MIGRATIONS = ["registry_migrations"] + [
    f"registry_migrations.{name}" for name in find_namespace_packages("migrations", exclude=_SKIP)
]

setup(packages=_CODE + _MIGRATIONS, package_dir={"registry_migrations": "migrations"})
