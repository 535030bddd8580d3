"""Where the tests' sample data lives: `tests/data/`, inside the repository (see its README)."""

from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "data"
