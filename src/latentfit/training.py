"""Training CompressAI models on a folder of photos, resumably, for the bundled model zoo.

Loss (CompressAI convention): `L = R / P + λ · 255² · MSE(x, x̂)` with additive uniform noise on the
latents, plus the entropy bottleneck's auxiliary quantile loss on its own optimiser. A checkpoint
holds model, both optimisers, the step and every random state, so an interrupted run continues
exactly as if it had never stopped.
"""

from __future__ import annotations

import io
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch
from PIL import Image

from .errors import LatentfitError
from .imageio import atomic_write_bytes, center_box, list_images
from .metrics import psnr_from_mse, rd_loss
from .models.architectures import (
    Architecture, architecture_for, build_architecture, get_architecture, infer_architecture,
)
from .models.weights import export_encoder, export_weights, load_state_dict_file, weights_digest
from .relaxations import get_proxy
from .strategies import Registry, Strategy


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoints)."""

    train_dirs: list[str]
    #: Held-out images: the first `valid_images`, centre-cropped to `valid_crop`, every `validate_every` steps.
    valid_dir: str | None = None
    valid_images: int = 16
    valid_crop: int = 256
    validate_every: int = 500
    checkpoint_every: int = 100
    seed: int = 0
    #: The model: its architecture, widths and λ (`L = R/P + λ·255²·MSE`).
    architecture: str = "mbt2018-mean"
    N: int = 128
    M: int = 192
    lmbda: float = 0.013
    steps: int = 10000
    batch_size: int = 8
    #: Weights to start from (exported or a checkpoint; a context model may start from a model without it).
    init_from: str | None = None
    patch_size: int = 128
    lr: float = 1e-4
    aux_lr: float = 1e-3
    lr_drop_at: float = 0.9
    lr_drop_factor: float = 0.1
    #: What the run may change (`FINETUNES`): "all"; "prior", only the probability model (`g_a`, `g_s`
    #: frozen: Campos et al.'s "+proba"); "context", only what a context model adds to the model it was
    #: initialised from; "encoder", only the analysis transforms against the true loss, so files made
    #: with the result decode with the unchanged base model (an amortised warm start for refinement).
    trainable: str = "all"
    clip_max_norm: float = 1.0
    #: lr of a context model's own networks, which start from zero when initialised from a model
    #: without the context; None: `lr`.
    context_lr: float | None = None

    def __post_init__(self):
        finetune(self.trainable)  # an unknown kind is an error here


def finetune(name: str) -> "Finetune":
    """The registered fine-tuning kind `name` (`FINETUNES`), or a one-line error naming the choices."""
    if name not in FINETUNES.names():
        raise LatentfitError(f"--finetune must be one of {', '.join(FINETUNES.names())}, got '{name}'")
    return FINETUNES.get(name)


def hard_rate_distortion(model: torch.nn.Module, x: torch.Tensor, lmbda: float) -> dict[str, torch.Tensor]:
    """The true loss of what the codec transmits for `x` (latents rounded exactly as `compress` rounds
    them: `y` about its predicted mean, `z` about its median), with straight-through gradients into the
    analysis transforms. The entropy models are evaluated as in coding (no noise)."""
    arch = architecture_for(model)
    y = model.g_a(x)
    z = arch.hyper_analysis(model, y) if arch.has_hyperprior else None
    straight_through = get_proxy("ste")
    bits, y_hat = arch.rate(model, y, z, lambda v: straight_through.relax(v, 0.0))
    pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    mse = torch.mean((model.g_s(y_hat) - x) ** 2)
    return {"loss": rd_loss(bits / pixels, mse, lmbda), "bpp": bits / pixels, "mse": mse}


def training_images(folders: list[str], min_size: int) -> list[Path]:
    """The images of `folders` with both sides at least `min_size` pixels, from their headers; a
    missing folder, a file that is not a readable image or no usable image at all is a one-line
    error naming it (checked before a run writes anything)."""
    found = []
    for folder in folders:
        if not Path(folder).is_dir():
            raise LatentfitError(f"{folder}: no such training folder")
        for path in list_images(folder):
            try:
                with Image.open(path) as img:
                    width, height = img.size
                    img.verify()
            except (OSError, SyntaxError, ValueError) as exc:  # Pillow's errors for a broken or foreign file
                raise LatentfitError(f"{path}: not a readable image ({type(exc).__name__})") from None
            if min(width, height) >= min_size:
                found.append(path)
    if not found:
        raise LatentfitError(f"no training images of at least {min_size}px found in {', '.join(map(str, folders))}")
    return found


class ImageBank:
    """All training images in memory as uint8 (3, H, W) tensors; random crops and flips from a
    seeded generator so that sampling is reproducible and resumable."""

    def __init__(self, folders: list[str], min_size: int):
        self.images: list[torch.Tensor] = []
        for path in training_images(folders, min_size):
            with Image.open(path) as img:
                array = np.asarray(img.convert("RGB"), dtype=np.uint8)
            self.images.append(torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous())

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch_size: int, patch: int, generator: torch.Generator) -> torch.Tensor:
        crops = []
        for _ in range(batch_size):
            image = self.images[int(torch.randint(len(self.images), (1,), generator=generator))]
            _, height, width = image.shape
            top = int(torch.randint(height - patch + 1, (1,), generator=generator))
            left = int(torch.randint(width - patch + 1, (1,), generator=generator))
            crop = image[:, top : top + patch, left : left + patch]
            if bool(torch.rand(1, generator=generator) < 0.5):
                crop = crop.flip(-1)
            if bool(torch.rand(1, generator=generator) < 0.5):
                crop = crop.flip(-2)
            crops.append(crop)
        return torch.stack(crops).float().div_(255.0)


def center_crops(folder: str, count: int, crop: int) -> torch.Tensor:
    """The first `count` images of `folder`, centre-cropped to `crop` x `crop`, as one batch."""
    crops = []
    for path in list_images(folder)[:count]:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.uint8)
        if min(array.shape[:2]) < crop:
            continue
        rows, cols = center_box(*array.shape[:2], crop)
        crops.append(torch.from_numpy(array[rows, cols].copy()).permute(2, 0, 1))
    if not crops:
        raise LatentfitError(f"{folder}: no validation images of at least {crop}px")
    return torch.stack(crops).float().div_(255.0)


def rate_distortion(output: dict, target: torch.Tensor, lmbda: float) -> dict[str, torch.Tensor]:
    """`bpp = −Σ log2 p / P`, `mse`, and `loss = bpp + λ·255²·mse` of a CompressAI forward output."""
    pixels = target.shape[0] * target.shape[-2] * target.shape[-1]
    bpp = sum(lik.log2().sum() for lik in output["likelihoods"].values()) / -pixels
    mse = torch.mean((output["x_hat"] - target) ** 2)
    return {"loss": rd_loss(bpp, mse, lmbda), "bpp": bpp, "mse": mse}


#: What a training run may change (`--finetune`): each kind is a strategy that picks its parameters
#: from what the architecture says of itself (`Architecture.encoder_prefixes`, `context_prefixes`,
#: its hyper part), sets the modules' modes for a step and gives the step's loss.
FINETUNES: Registry = Registry("finetune kind")


class Finetune(Strategy):
    #: Whether the entropy bottleneck's quantiles (CompressAI's auxiliary loss) are trained too.
    train_aux: ClassVar[bool] = False
    #: Whether the decoder stays bit-exact, so the result's files carry the starting weights' digest.
    keeps_decoder: ClassVar[bool] = False

    def parameters(self, model: torch.nn.Module, arch: Architecture) -> list[torch.nn.Parameter]:
        """The parameters the run trains (the others frozen); a one-line error where `arch` has none."""
        raise NotImplementedError

    def set_modes(self, model: torch.nn.Module, arch: Architecture) -> None:
        model.train()

    def loss(self, model: torch.nn.Module, batch: torch.Tensor, lmbda: float) -> dict[str, torch.Tensor]:
        return rate_distortion(model(batch), batch, lmbda)

    def check(self, config: "TrainConfig") -> None:
        """Refuse a configuration this kind cannot train from (before anything is written)."""

    def export(self, trainer: "Trainer", path: str | Path, card: dict, dtype: str) -> torch.nn.Module:
        """Write the trained weights and their card (`models.weights.export_weights`)."""
        return export_weights(trainer.model, path, card, dtype=dtype)


def _named(model: torch.nn.Module, prefixes: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """The parameters under `prefixes`, prefix by prefix (the order an optimiser's saved state keeps)."""
    return [p for prefix in prefixes for n, p in model.named_parameters() if n.startswith(prefix)]


@FINETUNES.register
@dataclass(frozen=True)
class FinetuneAll(Finetune):
    """Everything (and the bottleneck's quantiles, on their own optimiser)."""

    name: ClassVar[str] = "all"
    train_aux: ClassVar[bool] = True
    #: Prefixes kept frozen.
    frozen: ClassVar[tuple[str, ...]] = ()

    def parameters(self, model: torch.nn.Module, arch: Architecture) -> list[torch.nn.Parameter]:
        return [p for n, p in model.named_parameters() if not n.startswith(self.frozen) and not n.endswith(".quantiles")]


@FINETUNES.register
@dataclass(frozen=True)
class FinetunePrior(FinetuneAll):
    """The probability model only (hyper-analysis, hyper-synthesis, entropy models and any context
    networks): `g_a` and `g_s` frozen, Campos et al.'s "+proba"."""

    name: ClassVar[str] = "prior"
    frozen: ClassVar[tuple[str, ...]] = ("g_a.", "g_s.")


@FINETUNES.register
@dataclass(frozen=True)
class FinetuneContext(Finetune):
    """Only what a context model adds to the model it was initialised from (its `context_prefixes`),
    its transforms and hyperprior frozen, so it starts at exactly that model's rates."""

    name: ClassVar[str] = "context"

    def parameters(self, model: torch.nn.Module, arch: Architecture) -> list[torch.nn.Parameter]:
        if not arch.context_prefixes:
            raise LatentfitError(f"trainable 'context' needs a context model, not {arch.name}")
        return _named(model, arch.context_prefixes)

    def set_modes(self, model: torch.nn.Module, arch: Architecture) -> None:
        model.train()
        if arch.hyper is not None:  # frozen: its quantiser must not add training noise
            for module in (arch.hyper.h_a(model), arch.hyper.h_s(model), arch.hyper.bottleneck(model)):
                module.eval()


@FINETUNES.register
@dataclass(frozen=True)
class FinetuneEncoder(Finetune):
    """Only the analysis transforms (`Architecture.encoder_prefixes`), against the true hard-rounded
    loss with straight-through gradients; decoder and entropy models stay bit-exact, so files made
    with the result decode with the unchanged base model (an amortised warm start for refinement)."""

    name: ClassVar[str] = "encoder"
    keeps_decoder: ClassVar[bool] = True

    def parameters(self, model: torch.nn.Module, arch: Architecture) -> list[torch.nn.Parameter]:
        return [p for n, p in model.named_parameters() if n.startswith(arch.encoder_prefixes)]

    def set_modes(self, model: torch.nn.Module, arch: Architecture) -> None:
        model.eval()  # the entropy models as in coding: rounding, no noise

    def loss(self, model: torch.nn.Module, batch: torch.Tensor, lmbda: float) -> dict[str, torch.Tensor]:
        return hard_rate_distortion(model, batch, lmbda)

    def export(self, trainer: "Trainer", path: str | Path, card: dict, dtype: str) -> torch.nn.Module:
        """Only the encoder-side tensors, naming the base model whose files they make
        (`models.weights.export_encoder`)."""
        return export_encoder(trainer.model, path, card, trainer.base_digest, dtype=dtype)

    def check(self, config: "TrainConfig") -> None:
        if not config.init_from:
            raise LatentfitError("--finetune encoder fine-tunes a trained model: give --init (or --init-from)")


def _architecture_of(state: dict) -> str | None:
    try:
        return infer_architecture(state)
    except LatentfitError:
        return None


class Trainer:
    """Owns a training run: `Trainer(config, checkpoint_dir).run()` trains, resuming if a checkpoint exists."""

    def __init__(self, config: TrainConfig, checkpoint_dir: str | Path, device: str = "cpu"):
        self.config = config
        self.checkpoint_dir = Path(checkpoint_dir)
        self.device = torch.device(device)
        torch.manual_seed(config.seed)
        self.arch = get_architecture(config.architecture)
        self.finetune = finetune(config.trainable)
        self.finetune.check(config)
        self.model = build_architecture(config.architecture, config.N, config.M).to(self.device)
        if config.init_from:
            self._initialise(load_state_dict_file(config.init_from), config.init_from)
        # what an encoder fine-tune's files decode with: the weights it started from
        self.base_digest = weights_digest(self.model) if self.finetune.keeps_decoder else None
        main = self.finetune.parameters(self.model, self.arch)
        trained = {id(p) for p in main}
        for parameter in self.model.parameters():
            parameter.requires_grad_(id(parameter) in trained)
        aux = [p for n, p in self.model.named_parameters() if n.endswith(".quantiles")] if self.finetune.train_aux else []
        for parameter in aux:
            parameter.requires_grad_(True)
        # One parameter group per lr (each with its `base_lr`); `learning_rate` scales them all.
        context = {id(p) for p in _named(self.model, self.arch.context_prefixes)} if self.arch.context_prefixes else set()
        groups = [{"params": [p for p in main if id(p) not in context], "base_lr": config.lr},
                  {"params": [p for p in main if id(p) in context], "base_lr": config.context_lr or config.lr}]
        self.optimizer = torch.optim.Adam([g for g in groups if g["params"]], lr=config.lr)
        self.aux_optimizer = torch.optim.Adam(aux or [torch.zeros(0, requires_grad=True)], lr=config.aux_lr)
        self.train_aux = bool(aux)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.history: list[dict] = []
        self.bank: ImageBank | None = None
        self._stop = False
        self.resumed = self._resume()
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)  # only once the weights and settings are good

    def _initialise(self, state: dict, source) -> None:
        """Start from `state`: this architecture's weights, or those of an architecture it starts from
        (a context model from a model without the context, `Architecture.starts_from`)."""
        if self.arch.starts_from and _architecture_of(state) in self.arch.starts_from:
            self.model = self.arch.from_base_state_dict(state).to(self.device)
        else:
            self._load(state, source)

    def _load(self, state: dict, source) -> None:
        """`state` into the model, or a one-line error when it is another architecture's (or widths')."""
        try:
            self.model.load_state_dict(state)
        except RuntimeError:
            c = self.config
            raise LatentfitError(f"{source}: weights of another architecture or size than {c.architecture} "
                                 f"(N={c.N}, M={c.M})") from None

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint_dir / "last.pt"

    def _resume(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        self._load(state["model"], self.checkpoint_path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.aux_optimizer.load_state_dict(state["aux_optimizer"])
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        torch.set_rng_state(state["rng_torch"])
        self.generator.set_state(state["rng_sampler"])
        return True

    def save_checkpoint(self) -> None:
        state = {
            "config": asdict(self.config),
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict(),
            "rng_torch": torch.get_rng_state(),
            "rng_sampler": self.generator.get_state(),
            "history": self.history,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.checkpoint_path, buffer.getvalue(), force=True)

    def learning_rate(self, step: int) -> float:
        drop = step >= int(self.config.lr_drop_at * self.config.steps)
        return self.config.lr * (self.config.lr_drop_factor if drop else 1.0)

    def train_step(self) -> dict[str, float]:
        """One optimisation step on a fresh random batch; returns its loss terms."""
        if self.bank is None:
            self.bank = ImageBank(self.config.train_dirs, self.config.patch_size)
        self.finetune.set_modes(self.model, self.arch)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step) * group["base_lr"] / self.config.lr
        batch = self.bank.sample(self.config.batch_size, self.config.patch_size, self.generator).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.finetune.loss(self.model, batch, self.config.lmbda)
        terms["loss"].backward()
        if self.config.clip_max_norm > 0:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                           self.config.clip_max_norm)
        self.optimizer.step()
        aux = self.model.aux_loss()
        if self.train_aux:
            self.aux_optimizer.zero_grad(set_to_none=True)
            aux.backward()
            self.aux_optimizer.step()
        self.step += 1
        return {k: v.item() for k, v in terms.items()} | {"aux": aux.item()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Estimated bpp (from likelihoods, rounded latents) and PSNR on centre crops of the validation folder."""
        if not self.config.valid_dir:
            return {}
        batch = center_crops(self.config.valid_dir, self.config.valid_images, self.config.valid_crop)
        self.model.eval()
        totals = {"loss": 0.0, "bpp": 0.0, "mse": 0.0}
        for image in batch.split(4):
            image = image.to(self.device)
            terms = rate_distortion(self.model(image), image, self.config.lmbda)
            for key in totals:
                totals[key] += float(terms[key]) * image.shape[0] / batch.shape[0]
        self.model.train()
        return totals | {"psnr": psnr_from_mse(totals["mse"])}

    def request_stop(self, *_args) -> None:
        self._stop = True

    def run(self, progress: bool = True, on_step: Callable[[int, dict], None] | None = None) -> dict:
        """Train until `config.steps`, checkpointing every `checkpoint_every` steps and on SIGINT/SIGTERM."""
        from tqdm import tqdm

        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        bar = tqdm(total=self.config.steps, initial=self.step, disable=not progress, desc="train", unit="step")
        started = time.time()
        ema: dict[str, float] = {}
        try:
            while self.step < self.config.steps and not self._stop:
                terms = self.train_step()
                ema = {k: v if k not in ema else 0.98 * ema[k] + 0.02 * v for k, v in terms.items()}
                bar.update(1)
                bar.set_postfix(loss=f"{ema['loss']:.4f}", bpp=f"{ema['bpp']:.3f}", psnr=f"{psnr_from_mse(ema['mse']):.2f}")
                if on_step is not None:
                    on_step(self.step, terms)
                if self.step % self.config.validate_every == 0 or self.step == self.config.steps:
                    record = {"step": self.step, "seconds": time.time() - started} | self.validate()
                    self.history.append(record)
                    bar.write(" ".join(f"{k}={v:.4g}" for k, v in record.items()))
                if self.step % self.config.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            self.save_checkpoint()
            bar.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return {"step": self.step, "finished": self.step >= self.config.steps, "history": self.history}

    def export(self, path: str | Path, card: dict | None = None, dtype: str = "fp16") -> torch.nn.Module:
        """Write fp16 (or int8-kernel) weights plus a JSON model card describing this run; an `encoder`
        run writes only its `g_a`/`h_a` tensors, with the base model's identity (`models.weights.export_encoder`)."""
        card = {
            "architecture": self.config.architecture,
            "N": self.config.N,
            "M": self.config.M,
            "lmbda": self.config.lmbda,
            "steps": self.step,
            "seed": self.config.seed,
            "init_from": Path(self.config.init_from).name if self.config.init_from else None,
            "trainable": self.config.trainable,
            "context_lr": self.config.context_lr,
            "training_data": [str(Path(d).name) for d in self.config.train_dirs],
            "batch_size": self.config.batch_size,
            "patch_size": self.config.patch_size,
            "last_validation": self.history[-1] if self.history else None,
        } | (card or {})
        return self.finetune.export(self, path, card, dtype)
