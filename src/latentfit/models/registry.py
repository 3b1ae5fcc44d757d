"""Where model weights come from, by name: bundled with latentfit, CompressAI's zoo, or a checkpoint.

Resolution order for `load_model(name, quality, checkpoint)`:
1. `checkpoint`, a weights file the user gives (architecture from its model card or its shapes);
2. models bundled inside the package (`latentfit/weights/<name>-<quality>.pt` + `.json` card);
3. CompressAI's pretrained zoo, through the torch hub cache (`$TORCH_HOME/hub/checkpoints`):
   used offline when the file is there, downloaded (hash-checked) when it is not and a network is;
4. user checkpoints by their card's name and quality (`$LATENTFIT_HOME/checkpoints/*.pt`, e.g. the
   export of a `latentfit train --init ... --finetune ...`), as `latentfit models` lists them.
All files are loaded with `weights_only=True`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import LatentfitError, ModelNotAvailableError
from .adapter import LatentModel
from .architectures import ARCHITECTURES, architecture_class, infer_architecture
from .weights import apply_encoder, load_state_dict_file

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "weights"
BUNDLED_NAME = "latentfit-msh"
DEFAULT_MODEL = BUNDLED_NAME
DEFAULT_QUALITY = 2

#: λ of CompressAI's zoo models (MSE), qualities 1..8.
ZOO_LMBDA = {1: 0.0018, 2: 0.0035, 3: 0.0067, 4: 0.0130, 5: 0.0250, 6: 0.0483, 7: 0.0932, 8: 0.1800}


@dataclass
class ModelSpec:
    """One selectable model: what `latentfit models` lists."""

    name: str
    quality: int
    source: str  # "bundled", "zoo" or "checkpoint"
    architecture: str
    lmbda: float | None
    path: str
    available: bool = True
    card: dict = field(default_factory=dict)

    def selector(self) -> dict:
        """The `encode` options that select this model."""
        if self.source == "checkpoint":
            return {"checkpoint": self.path}
        return {"model": self.name, "quality": self.quality}


def _read_card(weights_path: Path) -> dict:
    card_path = weights_path.with_suffix(".json")
    if not card_path.is_file():
        return {}
    try:
        return json.loads(card_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LatentfitError(f"{card_path}: unreadable model card ({exc})") from None


def bundled_models() -> list[ModelSpec]:
    specs = []
    for path in sorted(BUNDLED_DIR.glob("*.pt")):
        match = re.fullmatch(r"(.+)-(\d+)", path.stem)
        if not match:
            continue
        card = _read_card(path)
        specs.append(
            ModelSpec(match.group(1), int(match.group(2)), "bundled", card.get("architecture", "mbt2018-mean"),
                      card.get("lmbda"), str(path), True, card)
        )
    return specs


def zoo_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _zoo_urls() -> dict:
    from compressai.zoo.image import model_urls

    return {arch: model_urls[arch]["mse"] for arch in ARCHITECTURES if arch in model_urls}


def zoo_models() -> list[ModelSpec]:
    """Every CompressAI zoo model latentfit supports; `available` says whether it is in the cache."""
    cache = zoo_cache_dir()
    specs = []
    for arch, urls in _zoo_urls().items():
        for quality, url in sorted(urls.items()):
            path = cache / os.path.basename(url)
            specs.append(ModelSpec(arch, quality, "zoo", arch, ZOO_LMBDA[quality], str(path), path.is_file()))
    return specs


def user_checkpoint_dir() -> Path:
    return Path(os.environ.get("LATENTFIT_HOME", Path.home() / ".cache" / "latentfit")) / "checkpoints"


def checkpoint_models() -> list[ModelSpec]:
    specs = []
    folder = user_checkpoint_dir()
    for path in sorted(folder.glob("*.pt")) + sorted(folder.glob("*.pth.tar")) if folder.is_dir() else []:
        card = _read_card(path)
        specs.append(ModelSpec(card.get("name", path.stem), int(card.get("quality", 0)), "checkpoint",
                               card.get("architecture", "?"), card.get("lmbda"), str(path), True, card))
    return specs


def available_models(include_unavailable_zoo: bool = False) -> list[ModelSpec]:
    """Bundled models, cached zoo models (all zoo models if asked), and user checkpoints."""
    zoo = [s for s in zoo_models() if s.available or include_unavailable_zoo]
    return bundled_models() + zoo + checkpoint_models()


def _build(state_dict: dict, architecture: str, source: str) -> torch.nn.Module:
    cls = architecture_class(architecture)
    try:
        model = cls.from_state_dict(state_dict)
    except (RuntimeError, KeyError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise LatentfitError(f"{source}: weights do not fit architecture {architecture} ({first})") from None
    if not model.entropy_bottleneck._quantized_cdf.numel():
        model.update(force=True)
    return model


def load_with_encoder(path: str | os.PathLike, card: dict, name: str, device: str | torch.device = "cpu",
                      source: str = "checkpoint") -> LatentModel:
    """The base model an encoder file (`train --finetune encoder`) names, with that file's `g_a`/`h_a`.

    Its files carry the base's name, quality and digest, so they decode with the plain base model."""
    base = card["base"]
    model = load_model(base.get("name"), base.get("quality"), device="cpu")
    digest = model.digest  # of the base weights, before the encoder changes them
    apply_encoder(model.model, path)
    return LatentModel(model.model, model.name, model.quality, model.lmbda, source=source, digest=digest,
                       encoder=name).to(device)


def load_checkpoint(path: str | os.PathLike, architecture: str | None = None, lmbda: float | None = None,
                    device: str | torch.device = "cpu") -> LatentModel:
    """A model from a user's weights file (exported by latentfit or a CompressAI state dict), or the
    base model with a fine-tuned encoder when the file is an encoder file."""
    path = Path(path)
    card = _read_card(path)
    if card.get("kind") == "encoder":
        return load_with_encoder(path, card, card.get("name") or path.name.split(".")[0], device)
    state = load_state_dict_file(path)
    architecture = architecture or card.get("architecture") or infer_architecture(state)
    model = _build(state, architecture, str(path))
    name = card.get("name") or path.name.split(".")[0]
    return LatentModel(model, name, int(card.get("quality", 0)), lmbda or card.get("lmbda") or 0.013,
                       source="checkpoint").to(device)


def _zoo_file(architecture: str, quality: int, download: bool) -> Path:
    urls = _zoo_urls().get(architecture)
    if urls is None or quality not in urls:
        raise LatentfitError(f"no zoo model {architecture} quality {quality}")
    url = urls[quality]
    path = zoo_cache_dir() / os.path.basename(url)
    if path.is_file():
        return path
    if download:
        path.parent.mkdir(parents=True, exist_ok=True)
        hash_prefix = re.search(r"-([a-f0-9]{6,})\.", os.path.basename(url))
        try:
            torch.hub.download_url_to_file(url, str(path), hash_prefix.group(1) if hash_prefix else None, progress=False)
            return path
        except Exception as exc:  # network errors come in many types; all mean "not available"
            reason = type(exc).__name__
    else:
        reason = "downloads disabled"
    raise ModelNotAvailableError(
        f"weights of {architecture} quality {quality} are not in the torch hub cache ({path}) and could not be "
        f"downloaded ({reason}); place the file there or use the bundled model '{BUNDLED_NAME}'"
    )


def load_model(name: str | None = None, quality: int | None = None, checkpoint: str | os.PathLike | None = None,
               device: str | torch.device = "cpu", download: bool | None = None) -> LatentModel:
    """The model selected by `checkpoint`, else by `name` and `quality` (defaults: the bundled model)."""
    if checkpoint is not None:
        return load_checkpoint(checkpoint, architecture=name if name in ARCHITECTURES else None, device=device)
    name = name or DEFAULT_MODEL
    for spec in bundled_models():
        if spec.name == name and (quality is None and spec.quality == DEFAULT_QUALITY or spec.quality == quality):
            if spec.card.get("kind") == "encoder":
                return load_with_encoder(spec.path, spec.card, spec.name, device, source="bundled")
            state = load_state_dict_file(spec.path)
            model = _build(state, spec.architecture, spec.path)
            return LatentModel(model, spec.name, spec.quality, float(spec.lmbda), source="bundled").to(device)
    if name in ARCHITECTURES:
        quality = quality or 3
        if download is None:
            download = os.environ.get("LATENTFIT_OFFLINE", "") not in ("1", "true", "yes")
        path = _zoo_file(name, quality, download)
        from compressai.zoo.pretrained import load_pretrained

        state = load_pretrained(load_state_dict_file(path))
        model = _build(state, name, str(path))
        return LatentModel(model, name, quality, ZOO_LMBDA[quality], source="zoo").to(device)
    users = [s for s in checkpoint_models() if s.name == name]
    if users:  # a user checkpoint by its card's name ($LATENTFIT_HOME/checkpoints), e.g. a fine-tune's export
        if quality is None:
            quality = DEFAULT_QUALITY if any(s.quality == DEFAULT_QUALITY for s in users) else users[0].quality
        for spec in users:
            if spec.quality == quality:
                return load_checkpoint(spec.path, device=device)
    bundled = sorted({(s.name, s.quality) for s in bundled_models() + users})
    if any(n == name for n, _ in bundled):
        qualities = ", ".join(str(q) for n, q in bundled if n == name)
        raise LatentfitError(f"model {name} has no quality {quality} (available: {qualities})")
    known = sorted({n for n, _ in bundled} | set(ARCHITECTURES))
    raise LatentfitError(f"unknown model '{name}' (known: {', '.join(known)})")


def load_family(name: str | None = None, device: str | torch.device = "cpu") -> list[LatentModel]:
    """Every quality of model `name` available here (default: the bundled model), lowest λ first: what
    rate control (`encode(..., target=...)`) chooses from."""
    name = name or DEFAULT_MODEL
    qualities = sorted({s.quality for s in bundled_models() if s.name == name})
    if not qualities and name not in ARCHITECTURES:
        qualities = sorted({s.quality for s in checkpoint_models() if s.name == name})
    if not qualities and name in ARCHITECTURES:
        qualities = [s.quality for s in zoo_models() if s.name == name and s.available]
        if not qualities:
            raise ModelNotAvailableError(f"no quality of {name} is in the torch hub cache ({zoo_cache_dir()}); "
                                         f"place its weights there or use the bundled model '{BUNDLED_NAME}'")
    if not qualities:
        known = sorted({s.name for s in bundled_models()} | set(ARCHITECTURES))
        raise LatentfitError(f"unknown model '{name}' (known: {', '.join(known)})")
    return sorted((load_model(name, q, device=device) for q in qualities), key=lambda m: m.lmbda)
