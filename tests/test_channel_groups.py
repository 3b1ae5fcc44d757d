"""The channel-wise context family (ELIC: `elic2022-official`, `elic2022-chandelier`,
`models/architectures/channel_groups.py`), on small models trained in the fixture."""

import pytest
import torch

from latentfit.models.architectures import build_architecture, get_architecture, infer_architecture
from latentfit.training import Trainer

from .test_context_models import check_refinement
from .test_training import tiny_config

ELIC = ["elic2022-official", "elic2022-chandelier"]


@pytest.fixture(scope="module", params=["elic2022-official", pytest.param("elic2022-chandelier", marks=pytest.mark.slow)])
def elic_model(request, tmp_path_factory):
    """A small ELIC (N = 16, M = 24: groups 3, 3, 6, 12) trained for 20 steps in the fixture."""
    from latentfit.models.adapter import LatentModel

    trainer = Trainer(tiny_config(architecture=request.param, steps=20, lr=3e-3), tmp_path_factory.mktemp(request.param))
    for _ in range(20):
        trainer.train_step()
    model = trainer.model.eval()
    model.update(force=True)
    return LatentModel(model, request.param, 1, 0.01)


@pytest.mark.parametrize("name", ELIC)
def test_its_weights_are_recognised_and_rebuilt_with_their_groups(name):
    torch.manual_seed(0)
    model = build_architecture(name, 16, 40)
    state = model.state_dict()
    assert infer_architecture(state) == name  # the two variants, and no other architecture, claim it
    rebuilt = get_architecture(name).from_state_dict(state)
    assert rebuilt.groups == model.groups == [5, 5, 10, 20]
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in state.items())


def test_none_is_compressai_bit_for_bit_in_format_1_and_both_formats_decode_to_the_true_loss(elic_model, kodak_crop):
    from latentfit.imageio import pad_to_multiple

    model = elic_model
    x = pad_to_multiple(kodak_crop.tensor, 64)
    with torch.no_grad():
        theirs = model.model.compress(x)
        latents = model.analysis(x)
    true = model.true_rate_distortion(latents, kodak_crop.tensor, model.lmbda)  # the groups in order, rounded
    for version in (1, 2):
        strings, shapes, checksum = model.compress(latents, format_version=version)
        assert len(strings) == 2 * len(model.model.groups) + 1  # anchors and non-anchors of each group, then z
        if version == 1:
            assert strings == [s[0] for s in theirs["strings"]]
        pixels = model.decompress(strings, shapes, checksum, format_version=version)
        assert (pixels[..., : x.shape[-2], : x.shape[-1]] - true.x_hat).abs().max() < 1e-4
        assert abs(sum(len(s) for s in strings) * 8 - float(true.bits)) < 0.02 * float(true.bits) + 64 * 8


def test_the_true_rate_is_compressais_own_two_pass_rate_of_every_group(elic_model, kodak_crop):
    """With rounding, the rate walks the groups as CompressAI's evaluation forward does (each group's
    channel context from the earlier groups' rounded latents, both checkerboard passes): the same
    bits and the same reconstruction."""
    from latentfit.imageio import pad_to_multiple

    model = elic_model
    x = pad_to_multiple(kodak_crop.tensor, 64)
    latents = model.analysis(x)
    ours = model.true_rate_distortion(latents, x, model.lmbda)
    with torch.no_grad():
        forward = model.model.eval()(x)
    theirs = sum(-lik.log2().sum() for lik in forward["likelihoods"].values())
    assert float(ours.bits) == pytest.approx(float(theirs), rel=1e-4)
    assert (ours.x_hat - forward["x_hat"].clamp(0, 1)).abs().max() < 1e-4


@pytest.mark.slow
def test_refinement_lowers_the_true_loss_with_every_variable_set_and_the_files_decode(elic_model, kodak_crop):
    check_refinement(elic_model, kodak_crop, methods=("uniform-noise", "sga", "sga+cosine3"))


def test_tiles_are_refused_and_a_file_missing_a_group_is_refused(elic_model, kodak_crop):
    from latentfit import RefinementConfig, decode, encode, refine_latents
    from latentfit.bitstream import BitstreamError, from_bytes, to_bytes
    from latentfit.errors import LatentfitError

    with pytest.raises(LatentfitError, match="tile"):
        refine_latents(elic_model, kodak_crop.tensor, RefinementConfig(steps=2, tile=64))
    stream = from_bytes(encode(kodak_crop, elic_model, RefinementConfig(method="none")).data)
    stream.strings = stream.strings[2:]
    with pytest.raises(BitstreamError, match=str(2 * len(elic_model.model.groups) + 1)):
        decode(to_bytes(stream), elic_model, "cut.lfc")


def test_a_context_fine_tune_changes_only_the_channel_groups(tmp_path):
    trainer = Trainer(tiny_config(architecture="elic2022-official", trainable="context", steps=3), tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for _ in range(3):
        trainer.train_step()
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(k.startswith("latent_codec.y.") for k in changed)
