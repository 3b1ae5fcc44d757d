"""Per-image decoder updates (`--adapt`): the code, the file section, refinement with an update, and
the encoder's keep-the-better-file comparison."""

import dataclasses
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latentfit import bitstream
from latentfit.bitstream import MIN_UPDATE_VALUES, BitstreamError, UpdateSection
from latentfit.codec import decode, decode_stream, entropy_code, file_loss
from latentfit.config import RefinementConfig
from latentfit.errors import LatentfitError
from latentfit.imageio import LoadedImage, pad_to_multiple
from latentfit.models.update import (
    MAX_VALUE, TAIL, ChannelAffine, PostFilter, Update, adapt_form, decode_update, encode_update, update_form,
)
from latentfit.pipeline import encode, keep_better
from latentfit.refine import WholeImage, analyse

values_arrays = st.lists(
    st.one_of(st.integers(-3, 3), st.integers(-TAIL - 40, TAIL + 40), st.integers(-MAX_VALUE, MAX_VALUE)),
    min_size=MIN_UPDATE_VALUES, max_size=400,
).map(lambda v: np.asarray(v, dtype=np.int64))


@given(values_arrays, st.sampled_from([ChannelAffine(), PostFilter(kernel=5, step_exp=9)]))
@settings(max_examples=150, deadline=None)
def test_update_values_round_trip_bit_exactly_through_the_file(values, form):
    section = encode_update(form, values)
    if not values.any():
        assert section is None  # an all-zero update is not written
        return
    stream = bitstream.Bitstream("latentfit-msh", 2, bytes(8), 64, 64, [(4, 4), (1, 1)], [b"ab", b"c"],
                                 update=section)
    parsed = bitstream.from_bytes(bitstream.to_bytes(stream), "u.lfc")
    assert parsed.version == 3 and parsed.update == section
    assert update_form(parsed.update) == dataclasses.replace(form, surrogate_decay=form.surrogate_decay)
    assert np.array_equal(decode_update(parsed.update), values)


def test_the_code_is_short_for_small_sparse_updates():
    values = np.zeros(774, dtype=np.int64)
    values[::40] = [1, -1, 2, -2, 1, 1, -1, 3, -1, 1, 1, -2, 1, -1, 1, 1, 2, -1, 1, -1][: len(values[::40])]
    section = encode_update(ChannelAffine(), values)
    # 774 values, 20 of them ±1..3: a fixed-length code would need 774·2 bits = 194 bytes
    assert len(section.payload) < 40


def _adapted_file(model, image: LoadedImage) -> bytes:
    """A real file with a (non-zero) update: the encoder's latents and a hand-set update."""
    x = image.tensor
    latents = model.analysis(pad_to_multiple(x, model.stride))
    values = torch.zeros(ChannelAffine().parameter_count(model.model.g_s))
    values[-6:] = torch.tensor([3.0, -2.0, 1.0, 4.0, -4.0, 2.0])  # the last layer's RGB scales and biases
    stream, data = entropy_code(image, model, dataclasses.replace(latents, update=Update(ChannelAffine(), values)))
    assert stream.update is not None
    return data


def test_an_update_changes_the_decoded_pixels_and_they_do_not_depend_on_threads(bundled_model, kodak_crop):
    data = _adapted_file(bundled_model, kodak_crop)
    without = bitstream.from_bytes(data)
    without = dataclasses.replace(without, update=None, version=2)
    pixels = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        pixels[threads] = decode(data, bundled_model, "a.lfc")
    assert np.array_equal(pixels[1], pixels[2])
    assert not np.array_equal(pixels[1], decode_stream(without, bundled_model))


def _with_valid_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_a_corrupted_or_truncated_update_section_is_refused_with_one_line(bundled_model, kodak_crop):
    data = _adapted_file(bundled_model, kodak_crop)
    section = bitstream.from_bytes(data).update.to_bytes()
    start = len(data) - 4 - len(section)
    body = bytearray(data[:-4])
    body[start + 12] ^= 0x10  # a payload byte, with the file's own CRC made valid again
    with pytest.raises(BitstreamError, match=r"^c\.lfc: corrupted decoder update \(checksum mismatch\)$"):
        bitstream.from_bytes(_with_valid_crc(bytes(body)), "c.lfc")
    for cut in (start + 3, start + 11, len(data) - 6):  # the section cut, the file's CRC made valid
        with pytest.raises(BitstreamError, match=r"^t\.lfc: truncated file"):
            bitstream.from_bytes(_with_valid_crc(data[:cut]), "t.lfc")


def test_an_update_for_another_decoder_or_form_is_refused(bundled_model, kodak_crop):
    stream = bitstream.from_bytes(_adapted_file(bundled_model, kodak_crop))
    fewer = dataclasses.replace(stream.update, count=stream.update.count - 1)
    with pytest.raises(BitstreamError, match="update of 773 values, but this decoder takes 774"):
        decode_stream(dataclasses.replace(stream, update=fewer), bundled_model, "f.lfc")
    with pytest.raises(BitstreamError, match="unknown decoder update form 9"):
        decode_stream(dataclasses.replace(stream, update=dataclasses.replace(stream.update, form=9)), bundled_model)
    with pytest.raises(BitstreamError, match="kernel must be"):
        update_form(UpdateSection(PostFilter.code, 4, 10, 3, 84, b"xxxx"))


def test_a_version_3_file_must_hold_an_update_and_zero_values_are_refused():
    body = bytearray(bitstream.to_bytes(bitstream.Bitstream("m", 1, bytes(8), 8, 8, [(1, 1)], [b"a"]))[:-4])
    body[4] = 3  # claims an update section it does not have
    with pytest.raises(BitstreamError, match="truncated"):
        bitstream.from_bytes(_with_valid_crc(bytes(body)))
    for section, message in ((UpdateSection(1, 0, 8, 3, 2, b"abcd"), "update of 2 values"),
                             (UpdateSection(1, 0, 8, 3, 774, b"ab"), "update of 2 coded bytes")):
        stream = bitstream.Bitstream("m", 1, bytes(8), 8, 8, [(1, 1)], [b"a"], update=section)
        with pytest.raises(BitstreamError, match=message):
            bitstream.from_bytes(bitstream.to_bytes(stream))
    with pytest.raises(LatentfitError, match="at least 8 values"):
        encode_update(ChannelAffine(), np.ones(2, dtype=np.int64))


def test_old_files_are_written_and_read_as_before():
    plain = bitstream.Bitstream("m", 1, bytes(8), 8, 8, [(1, 1)], [b"a"])
    assert bitstream.to_bytes(plain)[4] == 2 and bitstream.from_bytes(bitstream.to_bytes(plain)).update is None


def test_forms_start_from_the_decoder_as_trained_and_count_their_values(bundled_model):
    g_s = bundled_model.model.g_s
    y = torch.randn(1, 192, 4, 4)
    with torch.no_grad():
        plain = g_s(y)
        for form, count in ((ChannelAffine(), 2 * (128 * 3 + 3)), (PostFilter(), 3 * 3 * 9 + 3),
                            (PostFilter(kernel=5), 3 * 3 * 25 + 3)):
            assert form.parameter_count(g_s) == count
            with form.applied(g_s, torch.zeros(count)):
                assert torch.equal(g_s(y), plain)
            with form.applied(g_s, torch.full((count,), 0.01)):
                assert not torch.allclose(g_s(y), plain)
        assert torch.equal(g_s(y), plain)  # hooks are gone after the block
    with pytest.raises(LatentfitError, match="update of 5 values"):
        with ChannelAffine().applied(g_s, torch.zeros(5)):
            pass


@pytest.mark.parametrize("spec,message", [
    ("sideways", "unknown adapt 'sideways'"), ("postfilter:kernel=4", "kernel must be"),
    ("channels:colour=1", "bad decoder update form"), ("channels:step_exp", "not key=value"),
])
def test_bad_adapt_settings_are_refused(spec, message):
    with pytest.raises(LatentfitError, match=message):
        RefinementConfig(adapt=spec)


def test_adapt_is_recorded_and_rebuilt_and_absent_by_default():
    assert "adapt" not in RefinementConfig().to_dict()
    config = RefinementConfig(adapt="postfilter:kernel=5")
    again = RefinementConfig.from_dict(config.to_dict())
    assert again.update_form() == PostFilter(kernel=5) and again.to_dict() == config.to_dict()
    assert adapt_form("decoder") == ChannelAffine() and adapt_form("none") is None
    with pytest.raises(LatentfitError, match="compile"):
        RefinementConfig(adapt="decoder", compile=True)


def test_an_update_is_refined_only_on_whole_images(bundled_model, kodak_crop):
    from latentfit.refine import refine_latents

    with pytest.raises(LatentfitError, match="refined on the whole image"):
        refine_latents(bundled_model, kodak_crop.tensor, RefinementConfig(steps=2, tile=64, adapt="decoder"))


def test_refining_with_an_update_lowers_the_true_loss_and_the_update_gets_a_gradient(bundled_model, kodak_crop):
    x = kodak_crop.tensor
    begin = analyse(bundled_model, x, pad_to_multiple(x, bundled_model.stride), bundled_model.lmbda)
    problem = WholeImage(bundled_model, x, begin.latents, bundled_model.lmbda, RefinementConfig(adapt="decoder"))
    assert problem.true_loss().loss == pytest.approx(begin.loss.loss, rel=1e-6)  # a zero update costs nothing
    problem.proxy_loss(torch.round).backward()
    assert problem.variables[-1].grad.abs().sum() > 0
    with torch.no_grad():  # a non-zero update: the true rate is the latents' plus the real section's bytes
        problem.variables[-1][:50] = 3.0
    update = problem.latents().update
    pixels = x.shape[-2] * x.shape[-1]
    assert problem.true_loss().bpp == pytest.approx(begin.loss.bpp + 8 * update.coded_bytes() / pixels, rel=1e-5)
    assert update.coded_bytes() == len(update.section().to_bytes()) > 16


@pytest.mark.slow
def test_with_an_update_the_file_is_never_worse_than_the_latents_alone(bundled_model, kodak_crop):
    plain = encode(kodak_crop, bundled_model, RefinementConfig(steps=40))
    seen: list[tuple[int, int]] = []
    adapted = encode(kodak_crop, bundled_model, RefinementConfig(steps=40, adapt="decoder"),
                     progress=lambda step, planned, record: seen.append((step, planned)))
    lmbda = bundled_model.lmbda
    assert (file_loss(kodak_crop, adapted.data, adapted.decoded, lmbda)
            <= file_loss(kodak_crop, plain.data, plain.decoded, lmbda))
    # the first stage is the latents-only run itself; the update's stage adds a quarter of its steps
    # (the file without the update is that stage's: then the result is the fallback itself)
    fallback = adapted.refinement.fallback or adapted.refinement
    assert torch.equal(fallback.latents.y, plain.refinement.latents.y) and fallback.final == plain.refinement.final
    assert adapted.stats["steps_run"] == 50 and [s for s, _ in seen] == list(range(1, 51))
    assert seen[0][1] == 40 and seen[-1][1] == 50
    steps = [record.step for record in adapted.refinement.trace]
    assert steps == sorted(steps) and steps[-1] == 50
    if adapted.stream.update is None:
        assert adapted.data == plain.data
    else:
        assert adapted.stats["file_loss_with_update"] < adapted.stats["file_loss_without_update"]


@pytest.mark.slow
def test_an_update_that_pays_is_compared_with_the_latents_only_file(bundled_model):
    """On a synthetic page of dark glyphs (content unlike the training photos) the update pays; the file
    it beats is the latents-only encode's own, not the same latents with the update dropped."""
    rng = np.random.default_rng(0)
    page = np.ones((128, 192, 3), np.float32)
    for _ in range(60):
        y, x = rng.integers(0, 120), rng.integers(0, 186)
        page[y:y + rng.integers(2, 8), x:x + rng.integers(1, 6)] = 0.1
    image = LoadedImage(torch.from_numpy(page).permute(2, 0, 1)[None].contiguous(), "RGB")
    plain = encode(image, bundled_model, RefinementConfig(steps=60))
    adapted = encode(image, bundled_model, RefinementConfig(steps=60, adapt="decoder:share=1"))
    lmbda = bundled_model.lmbda
    assert adapted.stream.update is not None and adapted.stats["update_bytes"] > 0
    assert adapted.stats["file_loss_without_update"] == file_loss(image, plain.data, plain.decoded, lmbda)
    assert adapted.stats["file_loss_with_update"] < adapted.stats["file_loss_without_update"]
    assert np.array_equal(decode(adapted.data, bundled_model), adapted.decoded)


@pytest.mark.slow
def test_the_encoder_keeps_an_update_only_where_it_pays(bundled_model, kodak_crop):
    result = encode(kodak_crop, bundled_model, RefinementConfig(steps=40, adapt="decoder:lr_scale=30"))
    assert result.refinement.final.loss < result.refinement.initial.loss
    assert np.array_equal(decode(result.data, bundled_model), result.decoded)
    assert {"update_bytes", "update_parameters"} <= set(result.stats)
    # an update that does not pay: large random values on the same latents
    noisy = Update(ChannelAffine(), torch.randint(-60, 60, (774,)).float())
    latents = dataclasses.replace(result.refinement.latents, update=noisy)
    stream, data = entropy_code(kodak_crop, bundled_model, latents)
    forced = dataclasses.replace(result, data=data, stream=stream, decoded=decode_stream(stream, bundled_model),
                                 refinement=dataclasses.replace(result.refinement, latents=latents))
    kept, comparison = keep_better(kodak_crop, bundled_model, bundled_model.lmbda, forced)
    assert comparison["file_loss_without_update"] < comparison["file_loss_with_update"]
    assert kept.stream.update is None and kept.stream.version == 2 and comparison["update_bytes"] == 0
    assert len(kept.data) < len(data)


@pytest.mark.slow
def test_encode_cli_adapt_reports_the_update_and_info_shows_it(tmp_path, kodak_crop):
    from PIL import Image

    from latentfit.imageio import to_uint8

    source = tmp_path / "in.png"
    Image.fromarray(to_uint8(kodak_crop.tensor)).save(source)
    out = tmp_path / "a.lfc"
    run = subprocess.run([sys.executable, "-m", "latentfit.cli", "encode", str(source), "-o", str(out), "--steps", "3",
                          "--adapt", "decoder", "--json", "--no-progress"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    import json

    stats = json.loads(run.stdout)
    assert stats["adapt"] == "decoder" and stats["update_parameters"] == 774 and "update_bytes" in stats
    bad = subprocess.run([sys.executable, "-m", "latentfit.cli", "encode", str(source), "-o", str(tmp_path / "b.lfc"),
                          "--adapt", "sideways"], capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "unknown adapt" in bad.stderr
    assert not (tmp_path / "b.lfc").exists()


@pytest.mark.slow
def test_info_shows_the_update_and_decode_writes_its_pixels(tmp_path, bundled_model, kodak_crop):
    import json

    from PIL import Image

    path = tmp_path / "u.lfc"
    path.write_bytes(_adapted_file(bundled_model, kodak_crop))
    info = subprocess.run([sys.executable, "-m", "latentfit.cli", "info", str(path), "--json"], capture_output=True,
                          text=True)
    fields = json.loads(info.stdout)
    assert fields["format_version"] == 3 and fields["update_parameters"] == 774 and fields["update_bytes"] > 16
    out = tmp_path / "u.png"
    run = subprocess.run([sys.executable, "-m", "latentfit.cli", "decode", str(path), "-o", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), decode(path.read_bytes(), bundled_model))
