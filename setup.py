"""The one compiled part: the metering's plain-row scanner (all other metadata is in pyproject.toml)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("proxy.metering._rowscan", ["proxy/metering/_rowscan.c"],
                             extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Werror=implicit"])])
