"""Where the shared data sets are (Kodak, CLIC, the training photos): the one lookup that tests,
benchmarks and tools use. `LATENTFIT_DATA` names the folder; by default it is `../shared/data`
beside the project checkout."""

from __future__ import annotations

import os
from pathlib import Path

#: The checkout this package runs from (src/latentfit/shared_data.py -> the project folder).
PROJECT = Path(__file__).resolve().parents[2]


def data_dir(*parts: str) -> Path:
    """`LATENTFIT_DATA` (default `<project>/../shared/data`), joined with `parts`, e.g. `data_dir("kodak")`."""
    root = os.environ.get("LATENTFIT_DATA")
    return (Path(root) if root else PROJECT.parent / "shared" / "data").joinpath(*parts)
