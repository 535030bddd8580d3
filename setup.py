"""The compiled parts (the metering's plain-row scanner, the budget estimate's line scanner, the OpenAI door's chat
line converter and output rows) and the data the package carries: the repository's top-level `migrations/` and
`pricing/` are copied into the built package as `proxy/_data/` (all other metadata is in pyproject.toml)."""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

SHIPPED = ("migrations", "pricing")  # found at run time by proxy.settings.shipped
# The compiled scanners (each with a pure-Python path that the tests hold it to); they share proxy/_jsonscan.h (and
# the two Gemini row readers proxy/_usagescan.h).
COMPILED = (("proxy.metering._rowscan", "proxy/metering/_rowscan.c"),
            ("proxy.budgets._estscan", "proxy/budgets/_estscan.c"),
            ("proxy.openai_door._chatscan", "proxy/openai_door/_chatscan.c"),
            ("proxy.openai_door._chatrows", "proxy/openai_door/_chatrows.c"))
HEADERS = ["proxy/_jsonscan.h", "proxy/_usagescan.h"]
COMPILE_ARGS = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Werror=implicit"]


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
      ext_modules=[Extension(name, [source], depends=HEADERS, extra_compile_args=COMPILE_ARGS)
                   for name, source in COMPILED])
