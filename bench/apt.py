"""Installing a missing Debian package for a benchmark's set-up, as `.ci/run` does for the tests."""

from __future__ import annotations

import os
import subprocess


def apt_install(*packages: str) -> None:
    """`apt-get install` the packages (needs root or password-less sudo); raises CalledProcessError or OSError."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print(f"installing {', '.join(packages)} with apt-get", flush=True)
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
