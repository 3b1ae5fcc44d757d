import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentfit.bitstream import MAX_PIXELS, Bitstream, BitstreamError, from_bytes, to_bytes


def sample_stream(**changes) -> Bitstream:
    fields = dict(model_name="latentfit-msh", quality=2, digest=bytes(range(8)), height=512, width=768,
                  latent_shapes=[(32, 48), (8, 12)], strings=[b"\x01\x02\x03" * 50, b"zz" * 20])
    fields.update(changes)
    return Bitstream(**fields)


streams = st.builds(
    Bitstream,
    model_name=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    quality=st.integers(0, 255),
    digest=st.binary(min_size=8, max_size=8),
    height=st.integers(1, 4096),
    width=st.integers(1, 4096),
    latent_shapes=st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 65535)), min_size=2, max_size=2),
    strings=st.lists(st.binary(max_size=300), min_size=2, max_size=2),
    grayscale=st.booleans(),
    index_checksum=st.integers(0, 2**32 - 1),
)


@given(streams)
def test_round_trip_preserves_every_field(stream):
    parsed = from_bytes(to_bytes(stream))
    assert parsed == stream


def test_truncation_at_every_offset_is_refused():
    data = to_bytes(sample_stream())
    for cut in range(len(data)):
        with pytest.raises(BitstreamError):
            from_bytes(data[:cut], "cut.lfc")


@given(position=st.integers(0, 10**6), bit=st.integers(0, 7))
@settings(max_examples=300)
def test_any_single_bit_flip_is_refused(position, bit):
    data = bytearray(to_bytes(sample_stream()))
    data[position % len(data)] ^= 1 << bit
    with pytest.raises(BitstreamError):
        from_bytes(bytes(data), "flipped.lfc")


def _with_valid_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_unknown_version_names_the_version_and_file():
    data = bytearray(to_bytes(sample_stream()))
    data[4] = 9
    with pytest.raises(BitstreamError, match=r"odd\.lfc: format version 9 is not supported"):
        from_bytes(_with_valid_crc(bytes(data[:-4])), "odd.lfc")


def test_length_pointing_past_the_end_is_refused_even_with_valid_checksum():
    body = to_bytes(sample_stream(strings=[b"abc", b"de"]))[:-4]
    forged = body[:-6] + struct.pack(">I", 10**9) + body[-2:]  # length of the last string
    with pytest.raises(BitstreamError, match="truncated"):
        from_bytes(_with_valid_crc(forged))


@pytest.mark.parametrize("height,width", [(0, 10), (10, 0), (70000, 10), (MAX_PIXELS // 1000 + 1, 1001)])
def test_absurd_image_sizes_are_refused_before_any_allocation(height, width):
    body = bytearray(to_bytes(sample_stream())[:-4])
    offset = 4 + 3 + len("latentfit-msh") + 1 + 8
    body[offset : offset + 8] = struct.pack(">II", height, width)
    with pytest.raises(BitstreamError, match="image"):
        from_bytes(_with_valid_crc(bytes(body)))


def test_not_a_latentfit_file():
    with pytest.raises(BitstreamError, match="not a latentfit file"):
        from_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "x.png")


def test_header_overhead_is_small():
    stream = sample_stream()
    assert len(to_bytes(stream)) - sum(len(s) for s in stream.strings) <= 4 + 3 + len(stream.model_name) + 1 + 8 + 8 + 1 + 8 + 4 + 1 + 8 + 4
