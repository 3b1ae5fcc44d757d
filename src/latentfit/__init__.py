"""latentfit: content-adaptive neural image compression.

A pretrained CompressAI codec encodes an image; latentfit then optimises that image's latents
(Campos et al. 2019, Yang et al. 2020, Perugachi-Diaz et al. 2024) so the file gets smaller and/or
sharper, while decoder and entropy model stay as trained::

    import latentfit
    model = latentfit.load_model()                       # bundled latentfit-msh, quality 2
    image = latentfit.load_image("kodim23.png")
    result = latentfit.encode(image, model, latentfit.RefinementConfig(method="sga+ssl", steps=200))
    open("kodim23.lfc", "wb").write(result.data)
    pixels = latentfit.decode(result.data, model)        # (H, W, 3) uint8
"""

import warnings

warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from .allocator import tune_allocator  # noqa: E402
from .bitstream import Bitstream, from_bytes, to_bytes  # noqa: E402
from .pipeline import EncodeResult, decode, encode  # noqa: E402
from .errors import BitstreamError, LatentfitError, ModelNotAvailableError  # noqa: E402
from .imageio import load_image  # noqa: E402
from .models.adapter import LatentModel, Latents  # noqa: E402
from .models.registry import available_models, load_family, load_model  # noqa: E402
from .rate_control import Target, TargetUnreachableError  # noqa: E402
from .refine import RefinementConfig, RefinementResult, refine_latents  # noqa: E402
from .relaxations import PROXIES, QuantizationProxy, get_proxy, register_proxy  # noqa: E402
from .schedules import TemperatureSchedule  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Bitstream", "BitstreamError", "EncodeResult", "LatentModel", "LatentfitError", "Latents",
    "ModelNotAvailableError", "PROXIES", "QuantizationProxy", "RefinementConfig", "RefinementResult",
    "Target", "TargetUnreachableError", "TemperatureSchedule", "available_models", "decode", "encode", "from_bytes", "get_proxy", "load_family",
    "load_image", "load_model", "refine_latents", "register_proxy", "to_bytes", "tune_allocator",
]
