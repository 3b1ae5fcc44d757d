"""The checkerboard context architecture (`mbt2018-mean-checkerboard`, `latentfit-ctx`'s): built from
CompressAI's latent codecs, initialised from a mean-scale hyperprior, trained on its context alone."""

import pytest
import torch

from latentfit.models.architectures import build_architecture
from latentfit.models.checkerboard import MeanScaleCheckerboard, context_parameters
from latentfit.training import Trainer

from .test_training import tiny_config


@torch.no_grad()
def test_a_fresh_context_on_a_mean_scale_model_codes_exactly_as_that_model(bundled_model, kodak_crop):
    base = bundled_model.model
    ctx = MeanScaleCheckerboard.from_mean_scale(base.state_dict()).eval()
    ctx.update(force=True)
    x = kodak_crop.tensor
    ours, theirs = ctx.compress(x), base.compress(x)
    assert len(ours["strings"]) == 3  # anchors, non-anchors, z
    assert ours["strings"][2] == theirs["strings"][1]  # the hyperprior is untouched
    pixels = ctx.decompress(ours["strings"], ours["shape"])["x_hat"]
    assert torch.equal(pixels, base.decompress(theirs["strings"], theirs["shape"])["x_hat"])
    # Same entropy parameters, so the same bits up to the cost of coding the two halves separately.
    y_bytes = sum(len(s[0]) for s in ours["strings"][:2])
    assert abs(y_bytes - len(theirs["strings"][0][0])) <= 16


def test_a_mean_scale_state_dict_with_missing_parts_is_refused(bundled_model):
    state = {k: v for k, v in bundled_model.model.state_dict().items() if not k.startswith("h_s.")}
    with pytest.raises(ValueError, match="mean-scale"):
        MeanScaleCheckerboard.from_mean_scale(state)


def test_training_the_context_alone_changes_only_the_context_and_lowers_the_rate(tmp_path):
    torch.manual_seed(0)
    base = build_architecture("mbt2018-mean", 16, 24)
    init = tmp_path / "base.pt"
    torch.save(base.state_dict(), init)
    trainer = Trainer(tiny_config(architecture="mbt2018-mean-checkerboard", init_from=str(init), trainable="context",
                                  lr=3e-3, steps=60), tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    context = {id(p) for p in context_parameters(trainer.model)}
    names = {n for n, p in trainer.model.named_parameters() if id(p) in context}
    bpp = [trainer.train_step()["bpp"] for _ in range(60)]
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= names | {k for k in before if "gaussian_conditional" in k}
    assert not any(k.startswith(("g_a.", "g_s.", "latent_codec.hyper.")) for k in changed)
    assert sum(bpp[-10:]) / 10 < sum(bpp[:10]) / 10


def test_context_training_needs_a_context_architecture(tmp_path):
    from latentfit.errors import LatentfitError

    with pytest.raises(LatentfitError, match="context"):
        Trainer(tiny_config(trainable="context"), tmp_path)
