"""Safe loading and compact export of model weights.

Every load goes through `torch.load(..., weights_only=True)`: a file that needs pickle to load is
refused. Exported weights store floating-point parameters in fp16; the entropy-model tables are
rebuilt from the fp16-rounded parameters before saving, so the stored CDFs match the weights exactly.
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
        state[key] = value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
    return state


def weights_digest(model: nn.Module) -> bytes:
    """8-byte digest of every tensor of the model (parameters and entropy-coder tables).

    Written into each bitstream so that a file is only decoded by the exact weights that made it.
    """
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        tensor = value.detach().cpu().contiguous()
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes() if tensor.numel() else b"")
    return digest.digest()[:8]


def round_to_fp16_and_update(model: nn.Module) -> nn.Module:
    """A copy of `model` whose parameters are exactly representable in fp16, with fresh CDF tables."""
    model = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.half().float())
    model.update(force=True)
    return model


def export_weights(model: nn.Module, path: str | os.PathLike, card: dict, force: bool = True) -> nn.Module:
    """Save fp16 weights to `path` and the model card to `path` with suffix `.json`.

    Returns the exported model (fp16-rounded parameters, updated CDFs), i.e. what a loader gets back.
    """
    path = Path(path)
    exported = round_to_fp16_and_update(model)
    parameters = {name for name, _ in exported.named_parameters()}
    state = {
        key: (value.half() if key in parameters and value.is_floating_point() else value)
        for key, value in exported.state_dict().items()
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue(), force=force)
    card = dict(card)
    card["weights_digest"] = weights_digest(exported).hex()
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(card, indent=2) + "\n").encode(), force=True)
    return exported
