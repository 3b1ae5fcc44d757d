"""Tile-by-tile refinement: exact locality of the tile loss, no seams, and bounded windows."""

import dataclasses

import numpy as np
import pytest
import torch

from latentfit import Latents, RefinementConfig, encode, refine_latents
from latentfit.distortion import MSE, distortion_from, measure
from latentfit.imageio import LoadedImage, pad_to_multiple, to_uint8
from latentfit.metrics import MS_SSIM_MIN_SIDE, ms_ssim
from latentfit.tiling import MS_SSIM_CONTEXT, EntropyContext, Tile, tile_grid


@pytest.fixture(scope="module")
def photo():
    from latentfit import load_image

    from .conftest import kodak_image

    return load_image(kodak_image("kodim23.png")).tensor[..., 100:300, 200:456].contiguous()  # 200x256


def test_the_grid_covers_every_latent_exactly_once():
    cores = tile_grid(13, 22, 5)
    covered = np.zeros((13, 22), dtype=int)
    for top, bottom, left, right in cores:
        covered[top:bottom, left:right] += 1
    assert (covered == 1).all()


def _roi_weights(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Region-of-interest weights of mean 1: random levels, so every pixel's weight differs."""
    weights = 1.0 + 3.0 * torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(seed))
    return weights / weights.mean()


@pytest.fixture(scope="module")
def context_model():
    from latentfit import load_model

    return load_model("latentfit-ctx", 2)


@pytest.mark.parametrize("roi", [False, True])
@pytest.mark.parametrize("joint", [False, True])
@pytest.mark.parametrize("core_index", [0, 4, 8])
@pytest.mark.parametrize("which", ["latentfit-msh", "latentfit-ctx"])
def test_a_tile_loss_changes_exactly_as_the_whole_image_loss(bundled_model, context_model, photo, core_index, joint,
                                                             roi, which):
    """Changing one core (of y, or of y and z) changes the whole image's L_true by exactly the
    tile's L_true change (both in summed units): rate, decoder window and distortion region cover
    everything the core can reach; with a region of interest, the region's weights are the tile's.
    For the checkerboard model the rate covers the latents whose context sees the core's anchors."""
    model = bundled_model if which == "latentfit-msh" else context_model
    latents = model.analysis(pad_to_multiple(photo, model.stride))
    context = EntropyContext(model, latents)
    y, z = latents.y.detach().clone(), latents.z.detach().clone()
    core = tile_grid(y.shape[-2], y.shape[-1], 4 if joint else 5)[core_index]  # 5: boxes at odd offsets
    distortion = measure(MSE(), _roi_weights(*photo.shape[-2:])) if roi else None
    tile = Tile(model, model, photo, y, z, context, core, model.lmbda, joint, distortion)
    pixels = photo.shape[-2] * photo.shape[-1]
    before_whole = model.true_rate_distortion(Latents(y, z), photo, model.lmbda, distortion).loss * pixels
    before_tile = tile.true_loss().loss * tile.pixels
    generator = torch.Generator().manual_seed(core_index)
    with torch.no_grad():
        for variable in tile.variables:
            variable.add_(torch.randn(variable.shape, generator=generator) * 2.5)
    y[..., tile.core_box[0], tile.core_box[1]] = tile.y.detach()
    if joint:
        z[..., tile.z_box[0], tile.z_box[1]] = tile.z.detach()
    after_whole = model.true_rate_distortion(Latents(y, z), photo, model.lmbda, distortion).loss * pixels
    after_tile = tile.true_loss().loss * tile.pixels
    delta_whole, delta_tile = float(after_whole - before_whole), after_tile - before_tile
    assert abs(delta_whole) > 1000  # the perturbation matters
    assert delta_tile == pytest.approx(delta_whole, rel=1e-4)


def _strip_mask(height: int, width: int, tile: int, half_width: int = 4) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for edge in range(tile, height, tile):
        mask[max(edge - half_width, 0) : edge + half_width, :] = True
    for edge in range(tile, width, tile):
        mask[:, max(edge - half_width, 0) : edge + half_width] = True
    return mask


def _mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(((a.astype(np.float64) - b.astype(np.float64)) ** 2)[mask].mean())


@pytest.mark.slow
def test_tiled_refinement_improves_without_seams(bundled_model, photo):
    image = LoadedImage(photo, "RGB")
    config = dict(method="sga+ssl", steps=20, evaluate_every=5, seed=0)
    plain = encode(image, bundled_model, RefinementConfig(method="none"))
    tiled = encode(image, bundled_model, RefinementConfig(tile=128, **config))
    assert tiled.refinement.tiles == 2 * 2
    assert tiled.refinement.final.loss < 0.985 * tiled.refinement.initial.loss
    reference = to_uint8(photo)
    seams = _strip_mask(200, 256, 128)
    # no seams: refinement lowers the error at tile borders about as much as everywhere else
    gain_border = _mse(reference, plain.decoded, seams) / _mse(reference, tiled.decoded, seams)
    gain_inside = _mse(reference, plain.decoded, ~seams) / _mse(reference, tiled.decoded, ~seams)
    assert gain_border > 1.0
    assert gain_border > 0.9 * gain_inside


@pytest.mark.slow
def test_big_images_are_tiled_automatically_and_small_ones_are_not(bundled_model, monkeypatch):
    import latentfit.refine as refine

    x = torch.rand(1, 3, 96, 160, generator=torch.Generator().manual_seed(0))
    untiled = refine_latents(bundled_model, x, RefinementConfig(steps=2, evaluate_every=1))
    monkeypatch.setattr(refine, "AUTO_TILE_PIXELS", 96 * 160 - 1)
    monkeypatch.setattr(refine, "AUTO_TILE_SIZE", 64)
    tiled = refine_latents(bundled_model, x, RefinementConfig(steps=2, evaluate_every=1))
    assert (untiled.tiles, tiled.tiles) == (1, 2 * 3)
    assert tiled.steps_run == 2 * 6
    assert tiled.final.loss == pytest.approx(min(r.true_loss for r in tiled.trace), rel=1e-5)
    # joint by default: z is refined too; with variables="y" tiles keep the encoder's z
    encoder_z = bundled_model.analysis(pad_to_multiple(x, 64)).z
    assert not torch.equal(tiled.latents.z, encoder_z)
    y_only = refine_latents(bundled_model, x, RefinementConfig(steps=2, evaluate_every=1, variables="y"))
    assert y_only.tiles == 6 and torch.equal(y_only.latents.z, encoder_z)


def test_a_tiled_trace_is_the_whole_images_at_every_evaluation(bundled_model, photo):
    """Same shape as an untiled trace: a point per evaluation, on the whole image's loss, whose best is
    the loss of the latents kept (by exact locality, up to float rounding)."""
    config = RefinementConfig(method="sga+ssl", steps=4, evaluate_every=2, evaluations="every", tile=128, seed=1)
    shown = []
    tiled = refine_latents(bundled_model, photo, config, progress=lambda step, total, record: record and shown.append(record))
    steps = [record.step for record in tiled.trace]
    assert tiled.tiles == 4 and steps == [0, 2, 4, 6, 8, 10, 12, 14, 16]
    assert tiled.trace[0].true_loss == tiled.initial.loss
    assert min(r.true_loss for r in tiled.trace) == pytest.approx(tiled.final.loss, rel=1e-5)
    assert tiled.trace[-1].true_loss != pytest.approx(tiled.initial.loss, rel=1e-3)  # whole-image units, not a tile's
    seconds = [record.seconds for record in tiled.trace]
    assert seconds == sorted(seconds) and seconds[-1] <= tiled.seconds
    assert [r.true_loss for r in shown] == [r.true_loss for r in tiled.trace[1:]]  # the progress bar sees the same


@pytest.mark.slow
def test_a_region_of_interest_is_refined_in_tiles_across_their_borders(bundled_model, photo):
    """A mask across a tile border (columns 96–160 of 256, tiles of 128): the tiled refinement moves
    quality into the region on both sides of the border, and its trace is the whole image's weighted
    loss (the loss of the latents kept is the best of the trace)."""
    levels = torch.zeros(1, 1, 200, 256)
    levels[..., 96:160] = 1.0
    weights = 1.0 + 15.0 * levels
    weights = weights / weights.mean()
    config = RefinementConfig(method="sga+ssl", steps=12, evaluate_every=4, tile=128, seed=0)
    image = LoadedImage(photo, "RGB")
    plain = encode(image, bundled_model, config)
    roi = encode(dataclasses.replace(image, roi=weights), bundled_model, config)
    assert roi.refinement.tiles == 4
    assert min(r.true_loss for r in roi.refinement.trace) == pytest.approx(roi.refinement.final.loss, rel=1e-5)
    whole = bundled_model.true_rate_distortion(roi.refinement.latents, photo, bundled_model.lmbda,
                                               measure(MSE(), weights))
    assert float(whole.loss) == pytest.approx(roi.refinement.final.loss, rel=1e-5)
    reference = to_uint8(photo)
    for part in (np.s_[:, 96:128], np.s_[:, 128:160]):  # the region, left and right of the border
        assert _mse(reference, roi.decoded, _columns(part)) < _mse(reference, plain.decoded, _columns(part))
    rest = ~_columns(np.s_[:, 96:160])
    assert _mse(reference, roi.decoded, rest) > _mse(reference, plain.decoded, rest)


def _columns(part) -> np.ndarray:
    mask = np.zeros((200, 256), dtype=bool)
    mask[part] = True
    return mask


@pytest.mark.parametrize("spec", ["mse", "mix:0.5", "ms-ssim"])
def test_a_part_of_the_image_measures_its_share_in_the_whole_images_units(photo, spec):
    """`Measure.part`: on the whole image it is the measure itself; for a per-pixel distortion the
    parts of a partition add up to the whole exactly (in summed units), whatever box they see."""
    generator = torch.Generator().manual_seed(0)
    x_hat = (photo + 0.05 * torch.randn(photo.shape, generator=generator)).clamp(0, 1)
    weights = None if spec == "ms-ssim" else _roi_weights(200, 256)
    whole = measure(distortion_from(spec), weights)
    everything = (slice(0, 200), slice(0, 256))
    assert float(whole.part(everything, everything)(x_hat, photo)) == pytest.approx(float(whole(x_hat, photo)), rel=1e-6)
    if spec == "mse":
        total = 0.0
        for top, bottom in ((0, 120), (120, 200)):
            box = (slice(max(top - 40, 0), min(bottom + 40, 200)), slice(0, 256))
            region = (slice(top - box[0].start, bottom - box[0].start), slice(0, 256))
            part = whole.part(box, region)(x_hat[..., box[0], box[1]], photo[..., box[0], box[1]])
            total += float(part) * (bottom - top) * 256
        assert total == pytest.approx(float(whole(x_hat, photo)) * 200 * 256, rel=1e-5)


def test_a_tile_measuring_ms_ssim_sees_context_decoded_as_in_the_whole_image(bundled_model):
    """With MS-SSIM in the distortion a tile's box holds `MS_SSIM_CONTEXT` pixels around its region (at
    least 161 a side), and those pixels decode exactly as in the whole image (the window is widened)."""
    model = bundled_model
    x = torch.rand(1, 3, 384, 448, generator=torch.Generator().manual_seed(2))
    latents = model.analysis(pad_to_multiple(x, model.stride))
    context = EntropyContext(model, latents)
    y, z = latents.y.detach(), latents.z.detach()
    with torch.no_grad():
        whole = model.model.g_s(context.hat.y_tilde)[..., :384, :448]
        assert torch.equal(context.hat.y_tilde, context.hat.means + torch.round(y - context.hat.means))
    mix = measure(distortion_from("mix:0.5"))
    for core in [tile_grid(24, 28, 8)[i] for i in (0, 5, 11)]:  # a corner, inside, the last (narrow) column
        tile = Tile(model, model, x, y, z, context, core, model.lmbda, False, mix)
        rows, cols = tile.region_in_box
        box = tile.box_target.shape[-2:]
        assert min(box) >= MS_SSIM_MIN_SIDE
        region_top = max(core[0] - 2, 0) * 16
        assert rows.start == min(region_top, MS_SSIM_CONTEXT) or box[0] == MS_SSIM_MIN_SIDE
        with torch.no_grad():
            decoded = model.model.g_s(tile.window_hat)[..., tile.box_in_window[0], tile.box_in_window[1]]
        top, left = region_top - rows.start, max(core[2] - 2, 0) * 16 - cols.start
        expected = whole[..., top:top + box[0], left:left + box[1]]
        assert torch.allclose(decoded, expected, atol=1e-5)


@pytest.mark.slow
def test_ms_ssim_is_refined_in_tiles_and_wins_ms_ssim_there(bundled_model, photo):
    """Tiles refined for `mix:0.5` lower the whole image's mix loss (measured on the whole image) and
    give a file of higher MS-SSIM than tiles refined for the MSE at the same steps."""
    config = dict(method="sga+ssl", steps=8, evaluate_every=4, tile=128, seed=0)
    image = LoadedImage(photo, "RGB")
    mse = encode(image, bundled_model, RefinementConfig(**config))
    mix = encode(image, bundled_model, RefinementConfig(distortion="mix:0.5", **config))
    assert mix.refinement.tiles == 4
    chosen = measure(distortion_from("mix:0.5"))
    whole = float(bundled_model.true_rate_distortion(mix.refinement.latents, photo, bundled_model.lmbda, chosen).loss)
    assert whole == pytest.approx(mix.refinement.final.loss, rel=1e-6)
    assert whole < 0.97 * mix.refinement.initial.loss
    reference = to_uint8(photo)
    assert ms_ssim(reference, mix.decoded) > ms_ssim(reference, mse.decoded)
