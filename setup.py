"""The one thing pyproject.toml cannot say: the packages found under ulmfit_cli/ plus conf/.

conf/ stays at the top of the repository, where users look for it; the build maps it into the
package as `ulmfit_cli.conf` (its YAML files as package data), so an installed wheel or sdist
finds its configs beside its code (config.conf_dir()) and runs from any folder.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["ulmfit_cli", "ulmfit_cli.*"]) + ["ulmfit_cli.conf"],
    package_dir={"ulmfit_cli.conf": "conf"},
    package_data={"ulmfit_cli.conf": ["*.yaml", "**/*.yaml"]},
)
