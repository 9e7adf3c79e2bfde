"""What pyproject.toml cannot say: the packages found under ulmfit_cli/ plus conf/, and a clean build.

conf/ stays at the top of the repository, where users look for it; the build maps it into the
package as `ulmfit_cli.conf` (its YAML files as package data), so an installed wheel or sdist
finds its configs beside its code (config.conf_dir()) and runs from any folder.
"""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class CleanBuildPy(build_py):
    """Start from an empty build/lib/ulmfit_cli: setuptools never deletes what the source no longer
    has, so a module moved or removed since the last in-tree build (`pip install .`,
    `python -m build --wheel`) would otherwise ship in the next wheel beside its replacement."""

    def run(self):
        shutil.rmtree(Path(self.build_lib) / "ulmfit_cli", ignore_errors=True)
        super().run()


setup(
    packages=find_packages(include=["ulmfit_cli", "ulmfit_cli.*"]) + ["ulmfit_cli.conf"],
    package_dir={"ulmfit_cli.conf": "conf"},
    package_data={"ulmfit_cli.conf": ["*.yaml", "**/*.yaml"]},
    cmdclass={"build_py": CleanBuildPy},
)
