"""Tile-by-tile refinement: exact locality of the tile loss, no seams, and bounded windows."""

import numpy as np
import pytest
import torch

from latentfit import Latents, RefinementConfig, encode, refine_latents
from latentfit.imageio import LoadedImage, pad_to_multiple, to_uint8
from latentfit.tiling import EntropyContext, Tile, tile_grid


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


@pytest.mark.parametrize("joint", [False, True])
@pytest.mark.parametrize("core_index", [0, 4, 8])
def test_a_tile_loss_changes_exactly_as_the_whole_image_loss(bundled_model, photo, core_index, joint):
    """Changing one core (of y, or of y and z) changes the whole image's L_true by exactly the
    tile's L_true change (both in summed units): rate, decoder window and distortion region cover
    everything the core can reach."""
    model = bundled_model
    latents = model.analysis(pad_to_multiple(photo, model.stride))
    context = EntropyContext(model, latents)
    y, z = latents.y.detach().clone(), latents.z.detach().clone()
    core = tile_grid(y.shape[-2], y.shape[-1], 4 if joint else 6)[core_index]
    tile = Tile(model, model, photo, y, z, context, core, model.lmbda, joint)
    pixels = photo.shape[-2] * photo.shape[-1]
    before_whole = model.true_rate_distortion(Latents(y, z), photo, model.lmbda).loss * pixels
    before_tile = tile.true_loss().loss * tile.pixels
    generator = torch.Generator().manual_seed(core_index)
    with torch.no_grad():
        for variable in tile.variables:
            variable.add_(torch.randn(variable.shape, generator=generator) * 2.5)
    y[..., tile.core_box[0], tile.core_box[1]] = tile.y.detach()
    if joint:
        z[..., tile.z_box[0], tile.z_box[1]] = tile.z.detach()
    after_whole = model.true_rate_distortion(Latents(y, z), photo, model.lmbda).loss * pixels
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
