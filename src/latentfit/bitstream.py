"""The `.lfc` container: one self-describing file per image.

Layout (big-endian), versions 1, 2 and 3 (the same layout; version 2 computes the scale-table
indexes from `h_s(ẑ)` in float64, so files cross machines: see `models.entropy.scale_indexes`;
version 3 is version 2 with a decoder update section, and only files with an update are written as 3)::

    magic        4  b"\\x89LFC"
    version      1  = 2, or 3 with an update (1 is still read)
    flags        1  bit 0: source image was grayscale (decode writes L)
    name_len     1  then the model name, ASCII
    quality      1
    digest       8  first 8 bytes of SHA-256 over the model's tensors
    height       4  image height in pixels (unpadded)
    width        4  image width in pixels
    n_latents    1  then per latent: h (2), w (2)   (y first, then z)
    index_crc    4  CRC-32 of the encoder's scale-table indexes (0 without a hyperprior)
    n_strings    1  then per string: length (4), bytes
    update          (version 3 only) a per-image decoder update (`latentfit.models.update`):
      form       1  which parameters it changes
      argument   1  the form's option (the post-filter's kernel size; 0 for none)
      step_exp   1  values are multiples of 2^-step_exp
      decay      1  the discrete Laplace law the values are coded with
      count      4  how many values
      length     4  then the rANS-coded values
      crc32      4  CRC-32 of the update section's bytes before it
    crc32        4  CRC-32 of everything before it

The reader treats every file as untrusted: each length is checked against what remains, image
sizes are capped, and the CRC is verified before any field is used for decoding.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .errors import BitstreamError

MAGIC = b"\x89LFC"
VERSION = 2
#: The version of files with a decoder update section (the latents coded as in version 2).
UPDATE_VERSION = 3
#: Versions this reader decodes.
READABLE_VERSIONS = (1, 2, 3)
FLAG_GRAYSCALE = 1
#: Largest image a file may describe (the decoder refuses more; 8K UHD is 33 Mpx).
MAX_PIXELS = 64 * 1024 * 1024
MAX_SIDE = 65535
#: Most entropy-coded strings a file may hold (latents may be coded in several passes, e.g. a
#: checkerboard context codes the anchors and the others separately, ELIC two for each of its channel
#: groups: its architecture says how many).  Raised from 8 to 32 with ELIC; files with 8 or fewer are as before.
MAX_STRINGS = 32
#: Fewest and most values a decoder update may have (the bundled models' forms have 12 to 774;
#: CompressAI's rANS encoder overruns its buffer on one or two symbols) and its fewest coded bytes (the
#: rANS decoder reads a 4-byte state first).
MIN_UPDATE_VALUES = 8
MAX_UPDATE_VALUES = 1 << 20
MIN_UPDATE_PAYLOAD = 4


@dataclass(frozen=True)
class UpdateSection:
    """A file's decoder update as stored: the fields of the section (see the layout above)."""

    form: int
    argument: int
    step_exp: int
    decay: int
    count: int
    payload: bytes

    def to_bytes(self) -> bytes:
        head = struct.pack(">BBBBII", self.form, self.argument, self.step_exp, self.decay, self.count,
                           len(self.payload)) + self.payload
        return head + struct.pack(">I", zlib.crc32(head))


@dataclass
class Bitstream:
    """Everything one `.lfc` file holds."""

    model_name: str
    quality: int
    digest: bytes
    height: int
    width: int
    latent_shapes: list[tuple[int, int]]
    strings: list[bytes]
    grayscale: bool = False
    index_checksum: int = 0
    version: int = VERSION
    update: UpdateSection | None = None

    def __post_init__(self):
        if self.update is not None:
            self.version = UPDATE_VERSION

    @property
    def pixels(self) -> int:
        return self.height * self.width

    def header_fields(self) -> dict:
        return {
            "format_version": self.version,
            "model": self.model_name,
            "quality": self.quality,
            "weights_digest": self.digest.hex(),
            "height": self.height,
            "width": self.width,
            "latent_shapes": [list(s) for s in self.latent_shapes],
            "string_bytes": [len(s) for s in self.strings],
            "grayscale": self.grayscale,
            "index_checksum": f"{self.index_checksum:08x}",
        } | ({} if self.update is None else {"update_bytes": len(self.update.to_bytes()),
                                             "update_parameters": self.update.count})


def check_image_size(height: int, width: int) -> None:
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise BitstreamError(f"image size {width}x{height} outside 1..{MAX_SIDE}")
    if height * width > MAX_PIXELS:
        raise BitstreamError(f"image of {width}x{height} pixels exceeds the limit of {MAX_PIXELS} pixels")


def to_bytes(stream: Bitstream) -> bytes:
    """Serialise `stream` (the inverse of `from_bytes`)."""
    name = stream.model_name.encode("ascii")
    if not 1 <= len(name) <= 255:
        raise BitstreamError(f"model name must be 1..255 ASCII characters, got {stream.model_name!r}")
    if not 0 <= stream.quality <= 255 or len(stream.digest) != 8:
        raise BitstreamError("quality must be 0..255 and digest 8 bytes")
    check_image_size(stream.height, stream.width)
    parts = [
        MAGIC,
        struct.pack(">BBB", stream.version, FLAG_GRAYSCALE if stream.grayscale else 0, len(name)),
        name,
        struct.pack(">B", stream.quality),
        stream.digest,
        struct.pack(">II", stream.height, stream.width),
        struct.pack(">B", len(stream.latent_shapes)),
        *(struct.pack(">HH", h, w) for h, w in stream.latent_shapes),
        struct.pack(">I", stream.index_checksum),
        struct.pack(">B", len(stream.strings)),
    ]
    for string in stream.strings:
        parts += [struct.pack(">I", len(string)), string]
    if (stream.update is not None) != (stream.version == UPDATE_VERSION):
        raise BitstreamError(f"a version {stream.version} file {'cannot' if stream.update else 'must'} hold an update")
    if stream.update is not None:
        parts.append(stream.update.to_bytes())
    body = b"".join(parts)
    return body + struct.pack(">I", zlib.crc32(body))


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise BitstreamError(f"{self.source}: truncated file (while reading {what})")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def from_bytes(data: bytes, source: str = "bitstream") -> Bitstream:
    """Parse and validate an `.lfc` file; raises BitstreamError naming `source` on any defect."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError(f"{source}: not a latentfit file (bad magic bytes)")
    if len(data) < len(MAGIC) + 1:
        raise BitstreamError(f"{source}: truncated file (no version)")
    version = data[len(MAGIC)]
    if version not in READABLE_VERSIONS:
        raise BitstreamError(f"{source}: format version {version} is not supported "
                             f"(this latentfit reads {', '.join(map(str, READABLE_VERSIONS))})")
    if len(data) < len(MAGIC) + 8:
        raise BitstreamError(f"{source}: truncated file")
    body, (crc,) = data[:-4], struct.unpack(">I", data[-4:])
    reader = _Reader(body, source)
    reader.take(len(MAGIC) + 1, "header")
    flags, name_len = reader.unpack(">BB", "header")
    name_bytes = reader.take(name_len, "model name")
    if zlib.crc32(body) != crc:
        raise BitstreamError(f"{source}: truncated or corrupted file (checksum mismatch)")
    if flags & ~FLAG_GRAYSCALE:
        raise BitstreamError(f"{source}: unknown flags {flags:#04x}")
    try:
        name = name_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise BitstreamError(f"{source}: model name is not ASCII") from None
    (quality,) = reader.unpack(">B", "quality")
    digest = reader.take(8, "weights digest")
    height, width = reader.unpack(">II", "image size")
    try:
        check_image_size(height, width)
    except BitstreamError as exc:
        raise BitstreamError(f"{source}: {exc}") from None
    (n_latents,) = reader.unpack(">B", "latent count")
    if not 1 <= n_latents <= 4:
        raise BitstreamError(f"{source}: {n_latents} latent tensors (expected 1 to 4)")
    shapes = [tuple(reader.unpack(">HH", "latent shape")) for _ in range(n_latents)]
    (index_checksum,) = reader.unpack(">I", "index checksum")
    (n_strings,) = reader.unpack(">B", "string count")
    if not n_latents <= n_strings <= MAX_STRINGS:
        raise BitstreamError(f"{source}: {n_strings} coded strings for {n_latents} latents")
    strings = []
    for index in range(n_strings):
        (length,) = reader.unpack(">I", f"length of string {index}")
        strings.append(reader.take(length, f"string {index} ({length} bytes)"))
    update = _read_update(reader) if version == UPDATE_VERSION else None
    if reader.pos != len(body):
        raise BitstreamError(f"{source}: {len(body) - reader.pos} unexpected trailing bytes")
    return Bitstream(name, quality, digest, height, width, shapes, strings, bool(flags & FLAG_GRAYSCALE),
                     index_checksum, version, update)


def _read_update(reader: _Reader) -> UpdateSection:
    """The update section at the reader's position, its own CRC checked."""
    begin = reader.pos
    form, argument, step_exp, decay, count, length = reader.unpack(">BBBBII", "update header")
    if not MIN_UPDATE_VALUES <= count <= MAX_UPDATE_VALUES:
        raise BitstreamError(f"{reader.source}: decoder update of {count} values (expected {MIN_UPDATE_VALUES} to "
                             f"{MAX_UPDATE_VALUES})")
    if length < MIN_UPDATE_PAYLOAD:
        raise BitstreamError(f"{reader.source}: decoder update of {length} coded bytes (at least {MIN_UPDATE_PAYLOAD})")
    payload = reader.take(length, f"decoder update ({length} bytes)")
    (crc,) = reader.unpack(">I", "decoder update checksum")
    if zlib.crc32(reader.data[begin : reader.pos - 4]) != crc:
        raise BitstreamError(f"{reader.source}: corrupted decoder update (checksum mismatch)")
    return UpdateSection(form, argument, step_exp, decay, count, payload)
