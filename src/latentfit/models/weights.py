"""Safe loading and compact export of model weights.

Every load goes through `torch.load(..., weights_only=True)`: a file that needs pickle to load is
refused. Exported weights store floating-point parameters in fp16, or (`int8`) convolution kernels
as int8 with one fp16 scale per output channel (`w ≈ q · s`, `s = max|w_c| / 127`) and everything
else in fp16. The entropy-model tables are rebuilt from the rounded parameters before saving, so the
stored CDFs match the weights a loader gets back exactly.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import pickle
from pathlib import Path

import torch
from torch import nn

from ..errors import LatentfitError
from ..imageio import atomic_write_bytes
from .architectures import architecture_for


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model state dict stored in `path`.

    Accepts a plain state dict, CompressAI's training checkpoints (`{"state_dict": ...}`) and
    latentfit's training checkpoints (`{"model": ...}`). Loaded with `weights_only=True`.
    """
    path = Path(path)
    if not path.is_file():
        raise LatentfitError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise LatentfitError(
            f"{path}: refused, this checkpoint needs pickle to load (only weights-only files are trusted)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LatentfitError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LatentfitError(f"{path}: does not contain a model state dict")
    state = {}
    for key, value in obj.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        if key.endswith(INT8_SCALE):
            continue
        if key.endswith(INT8_SUFFIX):
            base = key[: -len(INT8_SUFFIX)]
            scale = obj.get(base + INT8_SCALE)
            if scale is None:
                raise LatentfitError(f"{path}: int8 tensor {base} has no scale")
            state[base] = dequantize_int8(value, scale)
            continue
        state[key] = value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
    return state


INT8_SUFFIX = ".__int8"
INT8_SCALE = ".__int8_scale"


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8: `q = round(w / s)`, `s = max|w_c| / 127` (stored in fp16)."""
    flat = weight.reshape(weight.shape[0], -1)
    scale = (flat.abs().amax(dim=1) / 127.0).clamp_min(1e-12).half()
    q = torch.round(flat / scale.float()[:, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(weight.shape), scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (q.float().reshape(q.shape[0], -1) * scale.float()[:, None]).reshape(q.shape)


def weights_digest(model: nn.Module, prefixes: tuple[str, ...] | None = None) -> bytes:
    """8-byte digest of every tensor of the model (parameters and entropy-coder tables), or of those
    whose names start with `prefixes`.

    Written into each bitstream so that a file is only decoded by the exact weights that made it.
    """
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        if prefixes is not None and not key.startswith(prefixes):
            continue
        digest.update(key.encode())
        tensor = value.detach().cpu().contiguous()
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes() if tensor.numel() else b"")
    return digest.digest()[:8]


#: Storage types of exported weights: "fp16" everything; "int8" per-channel int8 convolution kernels,
#: fp16 elsewhere (`latentfit-msh`: Kodak PSNR within ±0.03 dB of fp16); "mixed" int8 kernels except
#: the analysis and synthesis transforms, which stay fp16 (`latentfit-ctx`: int8 `g_a`/`g_s` kernels
#: cost it about 2 % validation loss each, int8 elsewhere nothing measurable; BENCHMARKS.md).
WEIGHT_DTYPES = ("fp16", "int8", "mixed")
FP16_IN_MIXED = ("g_a.", "g_s.")


def _int8_eligible(name: str, parameter: torch.Tensor, dtype: str) -> bool:
    if dtype == "mixed" and name.startswith(FP16_IN_MIXED):
        return False
    return dtype in ("int8", "mixed") and parameter.dim() == 4 and name.endswith(".weight")


def round_for_storage(model: nn.Module, dtype: str = "fp16") -> nn.Module:
    """A copy of `model` whose parameters are exactly what storage in `dtype` gives back, with fresh CDFs."""
    if dtype not in WEIGHT_DTYPES:
        raise LatentfitError(f"weights dtype must be one of {', '.join(WEIGHT_DTYPES)}, got {dtype!r}")
    model = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if _int8_eligible(name, parameter, dtype):
                parameter.copy_(dequantize_int8(*quantize_int8(parameter)))
            else:
                parameter.copy_(parameter.half().float())
    model.update(force=True)
    return model


def export_weights(model: nn.Module, path: str | os.PathLike, card: dict, force: bool = True,
                   dtype: str = "fp16") -> nn.Module:
    """Save weights (a `WEIGHT_DTYPES` storage type) to `path`, the model card beside it (`.json`).

    Returns the exported model (rounded parameters, updated CDFs), i.e. exactly what a loader gets back.
    """
    path = Path(path)
    exported = round_for_storage(model, dtype)
    parameters = dict(exported.named_parameters())
    state = {}
    for key, value in exported.state_dict().items():
        if key in parameters and _int8_eligible(key, value, dtype):
            state[key + INT8_SUFFIX], state[key + INT8_SCALE] = quantize_int8(value)
        elif key in parameters and value.is_floating_point():
            state[key] = value.half()
        elif key.endswith(".mask") and value.is_floating_point() and bool(((value == 0) | (value == 1)).all()):
            state[key] = value.to(torch.uint8)  # a masked convolution's 0/1 mask: exact, a quarter the size
        else:
            state[key] = value
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue(), force=force)
    card = dict(card) | {"weights_dtype": dtype}
    card["weights_digest"] = weights_digest(exported).hex()
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(card, indent=2) + "\n").encode(), force=True)
    return exported


def encoder_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the tensors only the encoder uses (analysis and hyper-analysis
    transforms, as the model's architecture says): an encoder-only fine-tune (`train --finetune
    encoder`) changes these and nothing else."""
    return architecture_for(model).encoder_prefixes


def encoder_digest(model: nn.Module) -> bytes:
    """8-byte digest of the encoder-side tensors only (`encoder_prefixes`)."""
    return weights_digest(model, encoder_prefixes(model))


def export_encoder(model: nn.Module, path: str | os.PathLike, card: dict, base_digest: bytes,
                   dtype: str = "fp16") -> nn.Module:
    """Save only the encoder-side tensors of `model` (an encoder-only fine-tune of the model whose
    `weights_digest` is `base_digest`), their card beside them naming that base.

    Why files need no new digest: a `.lfc` file's digest names the weights that decode it, and an
    encoder-only fine-tune leaves every tensor the decoder reads bit-identical to the base's. Its files
    therefore carry the base model's digest and decode with the unchanged base model anywhere; the
    loader (`apply_encoder`) enforces that the file holds encoder-side tensors only and was made for
    exactly that base. Returns the model with the stored (rounded) encoder tensors in place.
    """
    path = Path(path)
    exported = copy.deepcopy(model).cpu().eval()
    state = {}
    parameters = dict(exported.named_parameters())
    with torch.no_grad():
        prefixes = encoder_prefixes(exported)
        for name, value in exported.state_dict().items():
            if not name.startswith(prefixes):
                continue
            if name not in parameters or not value.is_floating_point():
                state[name] = value.clone()  # constant buffers (e.g. GDN's bounds) as they are
            elif _int8_eligible(name, value, dtype):
                q, scale = quantize_int8(value)
                value.copy_(dequantize_int8(q, scale))
                state[name + INT8_SUFFIX], state[name + INT8_SCALE] = q, scale
            else:
                value.copy_(value.half().float())
                state[name] = value.half().clone()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue(), force=True)
    card = dict(card) | {"kind": "encoder", "weights_dtype": dtype, "encoder_digest": encoder_digest(exported).hex()}
    card["base"] = dict(card.get("base") or {}) | {"weights_digest": base_digest.hex()}
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(card, indent=2) + "\n").encode(), force=True)
    return exported


def read_encoder_card(path: str | os.PathLike) -> dict:
    """The card of an encoder file (`export_encoder`), or a one-line error when it is not one."""
    path = Path(path)
    card_path = path.with_suffix(".json")
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise LatentfitError(f"{path}: no encoder card {card_path.name} beside it") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise LatentfitError(f"{card_path}: unreadable encoder card ({exc})") from None
    base = card.get("base") if isinstance(card, dict) else None
    if card.get("kind") != "encoder" or not isinstance(base, dict) or "weights_digest" not in base:
        raise LatentfitError(f"{path}: not an encoder file (its card names no base model)")
    return card


def apply_encoder(model: nn.Module, path: str | os.PathLike) -> dict:
    """Replace `model`'s encoder-side tensors by those of encoder file `path`, in place; returns its card.

    Refused (one line, model untouched): a file made for other base weights (the card's base digest
    is not `weights_digest(model)`), or one holding any tensor that is not encoder-side or does not fit.
    """
    path = Path(path)
    card = read_encoder_card(path)
    base = card["base"]
    actual = weights_digest(model).hex()
    if base["weights_digest"] != actual:
        raise LatentfitError(f"{path}: an encoder for {base.get('name', '?')} q{base.get('quality', '?')} "
                             f"(digest {base['weights_digest']}), not for the loaded model (digest {actual})")
    state = load_state_dict_file(path)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(encoder_prefixes(model))}
    foreign = sorted(k for k in state if k not in own)
    if foreign:
        raise LatentfitError(f"{path}: holds tensors an encoder file may not change ({', '.join(foreign[:3])})")
    missing = sorted(k for k in own if k not in state)
    misfit = sorted(k for k in state if state[k].shape != own[k].shape)
    if missing or misfit:
        raise LatentfitError(f"{path}: encoder tensors do not fit the model ({', '.join((missing + misfit)[:3])})")
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key in state:
                value.copy_(state[key].to(value.dtype))
    return card
