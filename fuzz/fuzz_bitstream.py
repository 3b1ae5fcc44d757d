"""Coverage-guided fuzzing of the `.lfc` reader and decoder with atheris (not part of the tests).

    .venv/bin/pip install atheris
    .venv/bin/python fuzz/fuzz_bitstream.py -atheris_runs=200000            # parser only
    .venv/bin/python fuzz/fuzz_bitstream.py --make-seed /tmp/lfc-corpus     # valid 64x64 files (one with a
                                                                            # decoder update), CRC stripped
    LFC_FUZZ_FIX_CRC=1 .venv/bin/python fuzz/fuzz_bitstream.py /tmp/lfc-corpus -max_total_time=600   # into decode

With LFC_FUZZ_FIX_CRC=1 every input gets a valid CRC appended, so mutations reach the field checks
and, for small images, CompressAI's entropy decoder with the bundled model (the decoder update's
rANS-coded values included). Any exception other than LatentfitError (or a crash of the process) is a
finding.
"""

import os
import struct
import sys
import zlib

import atheris
import compressai  # noqa: F401  (heavy dependencies are imported first, so only latentfit is instrumented)
import numpy  # noqa: F401
import PIL.Image  # noqa: F401
import pytorch_msssim  # noqa: F401
import torch  # noqa: F401

with atheris.instrument_imports(include=["latentfit"]):
    from latentfit import bitstream
    from latentfit.codec import decode_stream
    from latentfit.errors import LatentfitError

FIX_CRC = os.environ.get("LFC_FUZZ_FIX_CRC") == "1"
MAX_DECODE_PIXELS = 256 * 256
_model = None


def model():
    global _model
    if _model is None:
        import torch

        from latentfit import load_model

        torch.set_num_threads(1)
        _model = load_model()
    return _model


def test_one_input(data: bytes) -> None:
    if FIX_CRC:
        data = data + struct.pack(">I", zlib.crc32(data))
    try:
        stream = bitstream.from_bytes(data, "fuzz.lfc")
        if FIX_CRC and stream.pixels <= MAX_DECODE_PIXELS:
            decode_stream(stream, model(), "fuzz.lfc")
    except LatentfitError:
        pass


def make_seed(folder: str) -> None:
    import torch

    from latentfit import RefinementConfig, encode
    from latentfit.imageio import LoadedImage

    from latentfit.codec import entropy_code
    from latentfit.models.update import ChannelAffine, Update

    os.makedirs(folder, exist_ok=True)
    image = LoadedImage(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)), "RGB")
    result = encode(image, model(), RefinementConfig(method="none"))
    values = torch.randint(-3, 4, (ChannelAffine().parameter_count(model().model.g_s),),
                           generator=torch.Generator().manual_seed(0)).float()
    latents = result.refinement.latents
    latents.update = Update(ChannelAffine(), values)
    _, adapted = entropy_code(image, model(), latents)
    for name, data in (("seed.lfc", result.data), ("seed-update.lfc", adapted)):
        with open(os.path.join(folder, name), "wb") as handle:
            handle.write(data[:-4])


if __name__ == "__main__" and sys.argv[1:2] == ["--make-seed"]:
    make_seed(sys.argv[2])
elif __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
