"""The checkerboard context architecture (`mbt2018-mean-checkerboard`, `latentfit-ctx`'s): built from
CompressAI's latent codecs, initialised from a mean-scale hyperprior, trained on its context alone."""

import numpy as np
import pytest
import torch

from latentfit.models.architectures import build_architecture
from latentfit.models.architectures.checkerboard import MeanScaleCheckerboard
from latentfit.training import Trainer

from .test_training import tiny_config


@torch.no_grad()
def test_a_fresh_context_on_a_mean_scale_model_codes_exactly_as_that_model(bundled_model, kodak_crop):
    base = bundled_model.model
    ctx = MeanScaleCheckerboard.from_mean_scale(base.state_dict()).eval()
    ctx.update(force=True)
    x = kodak_crop.tensor
    ours, theirs = ctx.compress(x), base.compress(x)
    assert len(ours["strings"]) == 3  # anchors, non-anchors, z
    assert ours["strings"][2] == theirs["strings"][1]  # the hyperprior is untouched
    pixels = ctx.decompress(ours["strings"], ours["shape"])["x_hat"]
    assert torch.equal(pixels, base.decompress(theirs["strings"], theirs["shape"])["x_hat"])
    # Same entropy parameters, so the same bits up to the cost of coding the two halves separately.
    y_bytes = sum(len(s[0]) for s in ours["strings"][:2])
    assert abs(y_bytes - len(theirs["strings"][0][0])) <= 16


def test_a_mean_scale_state_dict_with_missing_parts_is_refused(bundled_model):
    state = {k: v for k, v in bundled_model.model.state_dict().items() if not k.startswith("h_s.")}
    with pytest.raises(ValueError, match="mean-scale"):
        MeanScaleCheckerboard.from_mean_scale(state)
    with pytest.raises(ValueError, match="mean-scale"):  # a foreign key is named, not a crash
        MeanScaleCheckerboard.from_mean_scale(bundled_model.model.state_dict() | {"context_prediction.weight": state["g_a.0.weight"]})


def test_training_the_context_alone_changes_only_the_context_and_lowers_the_rate(tmp_path):
    torch.manual_seed(0)
    base = build_architecture("mbt2018-mean", 16, 24)
    init = tmp_path / "base.pt"
    torch.save(base.state_dict(), init)
    trainer = Trainer(tiny_config(architecture="mbt2018-mean-checkerboard", init_from=str(init), trainable="context",
                                  lr=3e-3, steps=60), tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    own = ("latent_codec.y.context_prediction.", "latent_codec.y.entropy_parameters.")  # what the context adds
    names = {n for n, _ in trainer.model.named_parameters() if n.startswith(own)}
    bpp = [trainer.train_step()["bpp"] for _ in range(60)]
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= names | {k for k in before if "gaussian_conditional" in k}
    assert not any(k.startswith(("g_a.", "g_s.", "latent_codec.hyper.")) for k in changed)
    assert sum(bpp[-10:]) / 10 < sum(bpp[:10]) / 10


def test_context_training_needs_a_context_architecture(tmp_path):
    from latentfit.errors import LatentfitError

    with pytest.raises(LatentfitError, match="context"):
        Trainer(tiny_config(trainable="context"), tmp_path)


@pytest.fixture(scope="module")
def checkerboard_model(bundled_model):
    """`latentfit-msh` with a checkerboard context whose networks are random but not zero (so the
    context moves the entropy parameters), wrapped as latentfit uses it."""
    from latentfit.models.adapter import LatentModel

    torch.manual_seed(0)
    model = MeanScaleCheckerboard.from_mean_scale(bundled_model.model.state_dict())
    with torch.no_grad():
        last = model.latent_codec["y"].entropy_parameters.net[-1]
        last.weight.normal_(0, 0.02)
        last.bias.normal_(0, 0.02)
    model.update(force=True)
    return LatentModel(model, "ckbd-test", 2, bundled_model.lmbda)


def test_none_is_compressai_bit_for_bit_in_format_1_and_decodes_exactly(checkerboard_model, kodak_crop):
    from latentfit.imageio import pad_to_multiple

    x = pad_to_multiple(kodak_crop.tensor, 64)
    with torch.no_grad():
        theirs = checkerboard_model.model.compress(x)
        latents = checkerboard_model.analysis(x)
    for version in (1, 2):
        strings, shapes, checksum = checkerboard_model.compress(latents, format_version=version)
        if version == 1:
            assert strings == [s[0] for s in theirs["strings"]]
        pixels = checkerboard_model.decompress(strings, shapes, checksum, format_version=version)
        true = checkerboard_model.true_rate_distortion(latents, kodak_crop.tensor, checkerboard_model.lmbda)
        assert (pixels[..., : x.shape[-2], : x.shape[-1]] - true.x_hat.clamp(0, 1)).abs().max() < 1e-4
        # the true loss's rate is the file's, to within the rANS strings' few bytes of overhead
        assert abs(sum(len(s) for s in strings) * 8 - float(true.bits)) < 0.02 * float(true.bits) + 64 * 8


def test_the_context_moves_the_rate_so_the_rate_is_not_the_hyperpriors(checkerboard_model, bundled_model, kodak_crop):
    from latentfit.imageio import pad_to_multiple

    x = pad_to_multiple(kodak_crop.tensor, 64)
    latents = bundled_model.analysis(x)
    with_context = checkerboard_model.true_rate_distortion(latents, kodak_crop.tensor, bundled_model.lmbda)
    without = bundled_model.true_rate_distortion(latents, kodak_crop.tensor, bundled_model.lmbda)
    assert float(with_context.bits) != pytest.approx(float(without.bits), rel=1e-3)


@pytest.mark.slow
def test_refinement_through_the_context_lowers_the_true_loss_and_the_file_decodes(checkerboard_model, kodak_crop):
    from latentfit import RefinementConfig, decode, encode

    plain = encode(kodak_crop, checkerboard_model, RefinementConfig(method="none"))
    refined = encode(kodak_crop, checkerboard_model, RefinementConfig(method="sga+ssl", steps=40, evaluate_every=10))
    assert refined.stats["true_loss_final"] < 0.98 * refined.stats["true_loss_initial"]
    assert refined.stats["true_loss_initial"] == pytest.approx(plain.stats["true_loss_final"])
    assert (decode(refined.data, checkerboard_model) == refined.decoded).all()
    assert len(refined.stream.strings) == 3
    y_only = encode(kodak_crop, checkerboard_model, RefinementConfig(method="sga+ssl", steps=20, variables="y"))
    assert y_only.stats["true_loss_final"] < y_only.stats["true_loss_initial"]


def test_a_checkerboard_model_is_refined_in_tiles_and_its_file_decodes_as_encoded(checkerboard_model, kodak_crop):
    """Tiles (64 px on a 128x192 crop: 2 x 3 cores) refine a checkerboard model as the hyperprior's:
    the whole image's true loss falls, and the file decodes to the encoder's pixels; a small image is
    not tiled by default."""
    from latentfit import RefinementConfig, decode, encode, refine_latents

    tiled = encode(kodak_crop, checkerboard_model, RefinementConfig(method="sga+ssl", steps=6, evaluate_every=3,
                                                                     tile=64, seed=0))
    assert tiled.refinement.tiles == 6
    assert tiled.refinement.final.loss < 0.99 * tiled.refinement.initial.loss
    assert np.array_equal(decode(tiled.data, checkerboard_model, "tiled.lfc"), tiled.decoded)
    assert refine_latents(checkerboard_model, kodak_crop.tensor, RefinementConfig(steps=2)).tiles == 1


def test_a_checkerboard_file_with_a_missing_pass_is_refused(checkerboard_model, kodak_crop):
    from latentfit import RefinementConfig, decode, encode
    from latentfit.bitstream import BitstreamError, from_bytes, to_bytes

    result = encode(kodak_crop, checkerboard_model, RefinementConfig(method="none"))
    stream = from_bytes(result.data)
    stream.strings = stream.strings[1:]
    with pytest.raises(BitstreamError, match="3"):
        decode(to_bytes(stream), checkerboard_model, "cut.lfc")


@pytest.fixture(scope="module", params=["mbt2018", *(pytest.param(name, marks=pytest.mark.slow)
                                                     for name in ("cheng2020-anchor", "cheng2020-attn"))])
def autoregressive_model(request, tmp_path_factory):
    """A small autoregressive model trained for a few steps in the fixture (N = M = 16: seconds)."""
    from latentfit.models.adapter import LatentModel

    trainer = Trainer(tiny_config(architecture=request.param, N=16, M=16, steps=30, lr=3e-3),
                      tmp_path_factory.mktemp(request.param))
    for _ in range(30):
        trainer.train_step()
    model = trainer.model.eval()
    model.update(force=True)
    return LatentModel(model, request.param, 1, 0.01)


def test_autoregressive_none_is_compressai_bit_for_bit_and_decodes_to_the_true_loss_pixels(autoregressive_model,
                                                                                           kodak_crop):
    from latentfit.imageio import pad_to_multiple

    model = autoregressive_model
    x = pad_to_multiple(kodak_crop.tensor, 64)
    with torch.no_grad():
        theirs = model.model.compress(x)
        their_pixels = model.model.decompress(theirs["strings"], theirs["shape"])["x_hat"]
        latents = model.analysis(x)
    strings, shapes, checksum = model.compress(latents, format_version=1)
    assert strings == [s[0] for s in theirs["strings"]]
    # the same ŷ; only g_s's thread count (ours runs single-threaded, see `deterministic`) may round apart
    assert (model.decompress(strings, shapes, checksum, format_version=1) - their_pixels).abs().max() < 1e-5
    strings, shapes, checksum = model.compress(latents, format_version=2)
    pixels = model.decompress(strings, shapes, checksum, format_version=2)
    true = model.true_rate_distortion(latents, kodak_crop.tensor, model.lmbda)  # the sequential scan
    assert (pixels[..., : x.shape[-2], : x.shape[-1]] - true.x_hat).abs().max() < 1e-4
    assert abs(sum(len(s) for s in strings) * 8 - float(true.bits)) < 0.02 * float(true.bits) + 64 * 8


def test_the_true_loss_is_the_scan_not_the_parallel_training_form(autoregressive_model, kodak_crop):
    from latentfit.imageio import pad_to_multiple

    model = autoregressive_model
    x = pad_to_multiple(kodak_crop.tensor, 64)
    latents = model.analysis(x)
    true = model.true_rate_distortion(latents, kodak_crop.tensor, model.lmbda)
    with torch.no_grad():  # CompressAI's eval forward: the context sees round(y), not the decoder's ŷ
        forward = model.model.eval()(x)
    parallel_bits = sum(-lik.log2().sum() for lik in forward["likelihoods"].values())
    assert float(true.bits) != pytest.approx(float(parallel_bits), rel=1e-4)


def check_refinement(model, crop, methods=("uniform-noise", "sga")) -> None:
    """`sga+ssl` on `y` and `z` lowers the true loss, and every one of `methods` on `y` alone (`z = h_a(y)`)
    never raises it; every file decodes to the pixels its encode measured."""
    from latentfit import RefinementConfig, decode, encode

    refined = encode(crop, model, RefinementConfig(method="sga+ssl", steps=30, evaluate_every=10))
    assert refined.stats["true_loss_final"] < refined.stats["true_loss_initial"]
    assert (decode(refined.data, model) == refined.decoded).all()
    for method in methods:
        result = encode(crop, model, RefinementConfig(method=method, steps=20, evaluate_every=10, variables="y"))
        assert result.stats["true_loss_final"] <= result.stats["true_loss_initial"]
        assert (decode(result.data, model) == result.decoded).all()


@pytest.mark.slow
def test_refinement_through_an_autoregressive_context_lowers_the_true_loss(autoregressive_model, kodak_crop):
    check_refinement(autoregressive_model, kodak_crop)


def test_tiles_are_refused_for_a_raster_scan_context(autoregressive_model, kodak_crop):
    """A raster-scan context reaches every later latent, so it has no tile reach: an explicit tile size
    is refused in one line (and `auto` refines such a model whole: `refine.tile_size`)."""
    from latentfit import RefinementConfig, refine_latents
    from latentfit.errors import LatentfitError

    assert autoregressive_model.arch.tiling is None
    with pytest.raises(LatentfitError, match="tile"):
        refine_latents(autoregressive_model, kodak_crop.tensor, RefinementConfig(steps=2, tile=64, variables="y"))


def test_a_context_model_exports_compactly_and_loads_back_to_the_same_digest(tmp_path):
    from latentfit.models.registry import load_checkpoint
    from latentfit.models.weights import export_weights, weights_digest

    torch.manual_seed(0)
    model = build_architecture("mbt2018-mean-checkerboard", 16, 24)
    exported = export_weights(model, tmp_path / "c.pt", {"name": "c", "architecture": "mbt2018-mean-checkerboard"},
                              dtype="int8")
    stored = torch.load(tmp_path / "c.pt", weights_only=True)
    assert stored["latent_codec.y.context_prediction.mask"].dtype == torch.uint8
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.architecture == "mbt2018-mean-checkerboard" and loaded.digest == weights_digest(exported)
    assert torch.equal(loaded.model.latent_codec["y"].context_prediction.mask,
                       model.latent_codec["y"].context_prediction.mask)
