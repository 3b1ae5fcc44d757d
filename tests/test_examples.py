"""The worked example outside the package (`examples/own_architecture.py`): a user's own model class
plus its parts, registered, is trained, refined, coded and decoded by latentfit like its own."""

import importlib.util
from pathlib import Path

import pytest
import torch

from .test_training import tiny_config

EXAMPLE = Path(__file__).parent.parent / "examples" / "own_architecture.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("own_architecture", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_registered_architecture_of_ones_own_trains_refines_and_decodes(example, tmp_path, kodak_crop):
    import latentfit
    from latentfit.models.adapter import LatentModel
    from latentfit.models.architectures import infer_architecture
    from latentfit.training import Trainer

    trainer = Trainer(tiny_config(architecture="relu-mean-scale", steps=30, lr=3e-3), tmp_path)
    for _ in range(30):
        trainer.train_step()
    network = trainer.model.eval()
    network.update(force=True)
    assert isinstance(network, example.ReluMeanScale)
    assert infer_architecture(network.state_dict()) == "relu-mean-scale"  # not taken for a GDN hyperprior
    model = LatentModel(network, "relu-mean-scale", 1, 0.01)
    result = latentfit.encode(kodak_crop, model, latentfit.RefinementConfig(steps=20, evaluate_every=10))
    assert result.stats["true_loss_final"] < result.stats["true_loss_initial"]
    assert (latentfit.decode(result.data, model) == result.decoded).all()
    tiled = latentfit.refine_latents(model, kodak_crop.tensor, latentfit.RefinementConfig(steps=2, tile=64))
    assert tiled.tiles > 1  # its tiling reach came with the registration


def test_the_example_runs_as_a_script(example, kodak_crop):
    from .conftest import KODAK

    torch.manual_seed(0)
    stats = example.main([str(KODAK / "kodim23.png"), "--steps", "2", "--crop", "64", "--widths", "16", "24"])
    assert stats["decodes"] and stats["bytes"] > 0
