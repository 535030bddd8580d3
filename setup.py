"""The one compiled part (the metering's plain-row scanner) and the data the package carries: the repository's
top-level `migrations/` and `pricing/` are copied into the built package as `proxy/_data/` (all other metadata is in
pyproject.toml)."""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

SHIPPED = ("migrations", "pricing")  # found at run time by proxy.settings.shipped


class build_py_with_data(build_py):
    """build_py, then the shipped folders into the built package; an editable install reads them in place."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for folder in SHIPPED:
            target = Path(self.build_lib) / "proxy" / "_data" / folder
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": build_py_with_data},
      ext_modules=[Extension("proxy.metering._rowscan", ["proxy/metering/_rowscan.c"],
                             extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Werror=implicit"])])
