import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

from latentfit.shared_data import data_dir

# Tests check behaviour, not speed: Hypothesis's default 200 ms deadline per example fails a property
# test when the machine is busy (a first call once took 617 ms on a loaded 2-core CI machine).
settings.register_profile("latentfit", deadline=None)
settings.load_profile("latentfit")

ROOT = Path(__file__).resolve().parent.parent
DATA = data_dir()
KODAK = DATA / "kodak"


def missing_data(what: str) -> None:
    """Skip a test whose data is absent, or fail it where the data must be there: under CI (`CI` set,
    as CI services do, or LATENTFIT_REQUIRE_DATA=1, as `.ci/run` does) a moved data folder fails the
    run instead of skipping half of it."""
    message = f"{what} not found (set LATENTFIT_DATA)"
    required = [name for name in ("LATENTFIT_REQUIRE_DATA", "CI")
                if os.environ.get(name, "").lower() not in ("", "0", "false", "no")]
    if required:
        pytest.fail(message + f"; {required[0]} is set, which requires it")
    pytest.skip(message)


def kodak_image(name: str = "kodim23.png") -> Path:
    path = KODAK / name
    if not path.is_file():
        missing_data(f"Kodak data at {path}")
    return path


@pytest.fixture(scope="session")
def bundled_model():
    from latentfit import load_model

    return load_model()


@pytest.fixture(scope="session")
def kodak_crop():
    """A 128x192 crop of kodim23 (a real photo, small enough for many refinement steps)."""
    from latentfit import load_image
    from latentfit.imageio import LoadedImage

    image = load_image(kodak_image())
    return LoadedImage(image.tensor[..., 200:328, 300:492].contiguous(), "RGB")


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.set_num_threads(int(os.environ.get("LATENTFIT_TEST_THREADS", "2")))
    yield


#: An R-D curve (bpp, PSNR) of the shape learned codecs have on Kodak, for tests of the tables and BD-rates.
CURVE = [(0.12, 27.0), (0.2, 28.6), (0.31, 30.1), (0.46, 31.8), (0.66, 33.5)]
