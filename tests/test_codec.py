import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from latentfit import RefinementConfig, decode, encode, load_image
from latentfit.imageio import pad_to_multiple
from latentfit.imageio import LoadedImage, to_uint8
from latentfit.metrics import bits_per_pixel, psnr

from .conftest import kodak_image


@pytest.mark.slow  # a whole Kodak image; the fast subset checks format 1 on crops (context models, ELIC)
def test_none_is_compressai_bit_for_bit_in_format_1_and_pixel_for_pixel_in_format_2(bundled_model):
    torch.set_num_threads(1)  # the same numeric settings for both (thread count changes float rounding)
    image = load_image(kodak_image())
    result = encode(image, bundled_model, RefinementConfig(method="none"))
    own = bundled_model.model.compress(pad_to_multiple(image.tensor, bundled_model.stride))
    strings, _, _ = bundled_model.compress(result.refinement.latents, format_version=1)
    assert strings == [own["strings"][0][0], own["strings"][1][0]]
    # format 2 codes the same symbols (only a CDF choice may differ), so it decodes to the same pixels
    assert result.stream.version == 2
    reference = bundled_model.model.decompress(own["strings"], own["shape"])["x_hat"]
    assert np.array_equal(decode(result.data, bundled_model), to_uint8(reference))


def test_format_1_files_still_decode(bundled_model, kodak_crop):
    import dataclasses

    from latentfit import bitstream

    result = encode(kodak_crop, bundled_model, RefinementConfig(method="sga+ssl", steps=5, seed=2))
    strings, shapes, checksum = bundled_model.compress(result.refinement.latents, format_version=1)
    old = dataclasses.replace(result.stream, version=1, strings=strings, index_checksum=checksum)
    data = bitstream.to_bytes(old)
    assert data[4] == 1
    assert np.array_equal(decode(data, bundled_model, "old.lfc"), result.decoded)


@pytest.mark.parametrize("name", ["kodim01.png", "kodim05.png", "kodim13.png"])
def test_float64_scale_indexes_do_not_depend_on_the_convolution_algorithm(bundled_model, name):
    """Another machine computes `h_s(ẑ)` with other kernels: emulated here by a channels-last copy of
    `h_s` and another thread count. Format 2's indexes (which select the CDFs) must not move; in
    float32 a few of these images' ~295k indexes do on this kind of machine, so a file is refused."""
    import copy

    from latentfit.models.entropy import scale_indexes

    model = bundled_model.model
    with torch.no_grad():
        z = bundled_model.analysis(pad_to_multiple(load_image(kodak_image(name)).tensor, 64)).z
        z_hat = model.entropy_bottleneck.decompress(model.entropy_bottleneck.compress(z), z.shape[-2:])
        other = copy.deepcopy(model.h_s).to(memory_format=torch.channels_last)
        reference = scale_indexes(model.h_s, model.gaussian_conditional, z_hat, mean_scale=True)
        torch.set_num_threads(2)
        moved = scale_indexes(other, model.gaussian_conditional, z_hat.contiguous(memory_format=torch.channels_last),
                              mean_scale=True)
    assert reference.dtype == torch.int32 and reference.numel() == 192 * (z_hat.shape[-2] * 4) * (z_hat.shape[-1] * 4)
    assert torch.equal(reference, moved)


@pytest.mark.slow
def test_decoded_image_is_the_one_the_true_loss_was_computed_on(bundled_model, kodak_crop):
    config = RefinementConfig(method="sga+ssl", steps=30, evaluate_every=10, seed=5)
    result = encode(kodak_crop, bundled_model, config)
    true = bundled_model.true_rate_distortion(result.refinement.latents, kodak_crop.tensor, result.refinement.lmbda)
    assert np.array_equal(decode(result.data, bundled_model), to_uint8(true.x_hat))
    assert np.array_equal(result.decoded, to_uint8(true.x_hat))
    assert float(true.loss) == pytest.approx(result.stats["true_loss_final"], rel=1e-6)


def test_reported_figures_describe_the_real_file(bundled_model, kodak_crop):
    result = encode(kodak_crop, bundled_model, RefinementConfig(method="none"))
    assert result.stats["bytes"] == len(result.data)
    assert result.stats["bpp"] == bits_per_pixel(len(result.data), 128, 192)
    assert result.stats["psnr"] == pytest.approx(psnr(to_uint8(kodak_crop.tensor), decode(result.data, bundled_model)))


@pytest.mark.parametrize("height,width", [(1, 1), (17, 33), (65, 64), (100, 7)])
def test_any_image_size_round_trips_to_the_same_size(bundled_model, height, width):
    generator = torch.Generator().manual_seed(height * 1000 + width)
    tensor = torch.rand(1, 3, height, width, generator=generator)
    result = encode(LoadedImage(tensor, "RGB"), bundled_model, RefinementConfig(method="sga+ssl", steps=3))
    pixels = decode(result.data, bundled_model)
    assert pixels.shape == (height, width, 3)
    assert np.array_equal(pixels, result.decoded)


@pytest.mark.slow
def test_same_seed_same_file_other_seed_other_file(bundled_model, kodak_crop):
    config = dict(method="sga+ssl", steps=20, evaluate_every=20)
    first = encode(kodak_crop, bundled_model, RefinementConfig(seed=1, **config))
    again = encode(kodak_crop, bundled_model, RefinementConfig(seed=1, **config))
    other = encode(kodak_crop, bundled_model, RefinementConfig(seed=2, **config))
    assert first.data == again.data
    assert first.stats["seed"] == 1
    assert first.refinement.trace_dicts()[-1]["proxy_loss"] != other.refinement.trace_dicts()[-1]["proxy_loss"]


def test_scale_drift_between_machines_is_refused_not_decoded_as_garbage(bundled_model, kodak_crop, monkeypatch):
    from latentfit.bitstream import BitstreamError

    from latentfit.models import entropy

    result = encode(kodak_crop, bundled_model, RefinementConfig(method="none"))
    original = entropy.scale_indexes

    class Drifted(torch.nn.Module):  # an h_s(ẑ) off by 1 % (more than any float rounding; the check is the same)
        def __init__(self, h_s):
            super().__init__()
            self.h_s = h_s

        def forward(self, z_hat):
            return self.h_s(z_hat) * 1.01

    monkeypatch.setattr(entropy, "scale_indexes", lambda h_s, *args, **kw: original(Drifted(h_s), *args, **kw))
    with pytest.raises(BitstreamError, match="differ from the encoder's"):
        decode(result.data, bundled_model, "drift.lfc")


def test_the_entropy_coder_copy_codes_like_the_model_without_the_transforms(bundled_model, kodak_crop, monkeypatch):
    from latentfit.models.adapter import entropy_coder_copy

    result = encode(kodak_crop, bundled_model, RefinementConfig(method="none"))
    coder = entropy_coder_copy(bundled_model.model)
    assert not hasattr(coder, "g_a") and not hasattr(coder, "g_s")
    size = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert size(coder) < 0.5 * size(bundled_model.model)
    # what a GPU-resident model uses for its entropy coding: the same strings and the same pixels
    monkeypatch.setattr(bundled_model, "_coder", lambda: coder)
    assert bundled_model.compress(result.refinement.latents)[0] == result.stream.strings
    assert np.array_equal(decode(result.data, bundled_model), result.decoded)


@pytest.mark.slow
def test_decoding_in_another_process_with_another_thread_count_is_identical(bundled_model, kodak_crop, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    torch.set_num_threads(2)
    result = encode(kodak_crop, bundled_model, RefinementConfig(method="sga+ssl", steps=5))
    (tmp_path / "a.lfc").write_bytes(result.data)
    code = ("import torch, sys; torch.set_num_threads(1); from latentfit.cli import main; "
            "sys.argv=['latentfit','decode',sys.argv[1],'-o',sys.argv[2]]; main()")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.lfc"), str(tmp_path / "a.png")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), result.decoded)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (cross-device decoding)")
def test_a_file_encoded_on_the_cpu_decodes_on_the_gpu_within_one_level(bundled_model, kodak_crop):
    from latentfit import load_model

    result = encode(kodak_crop, bundled_model, RefinementConfig(method="sga+ssl", steps=5))
    gpu_model = load_model(bundled_model.name, bundled_model.quality, device="cuda")
    decoded = decode(result.data, gpu_model, "cpu.lfc")  # entropy coding runs on the CPU on both sides
    difference = np.abs(decoded.astype(np.int16) - result.decoded.astype(np.int16))
    assert difference.max() <= 1
    assert (difference > 0).mean() < 0.05


@given(height=st.integers(1, 400), width=st.integers(1, 400), crop_w=st.integers(1, 500), crop_h=st.integers(1, 500))
def test_a_center_crop_is_centred_and_clipped_to_the_image(height, width, crop_w, crop_h):
    from latentfit.imageio import center_box

    rows, cols = center_box(height, width, (crop_w, crop_h))
    assert (rows.stop - rows.start, cols.stop - cols.start) == (min(crop_h, height), min(crop_w, width))
    assert 0 <= rows.start and rows.stop <= height and 0 <= cols.start and cols.stop <= width
    assert 0 <= (height - rows.stop) - rows.start <= 1 and 0 <= (width - cols.stop) - cols.start <= 1
    assert center_box(height, width, crop_w) == center_box(height, width, (crop_w, crop_w))


@given(psnr_db=st.floats(5.0, 80.0))
def test_psnr_and_mse_are_inverse(psnr_db):
    from latentfit.metrics import mse_from_psnr, psnr_from_mse

    assert psnr_from_mse(mse_from_psnr(psnr_db)) == pytest.approx(psnr_db, abs=1e-4)  # float32 logarithm
    assert psnr_from_mse(0.0) == float("inf") and mse_from_psnr(float("inf")) == 0.0
