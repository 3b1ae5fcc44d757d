"""Encoder-only fine-tuning (`train --finetune encoder`): the decoder stays bit-exact, so its files
carry the base model's digest and decode with the plain base model."""

import json

import pytest
import torch

from latentfit.deadline import Deadline

from latentfit.errors import LatentfitError
from latentfit.training import TrainConfig, Trainer

from .conftest import DATA, missing_data
from .test_training import _screen_like


def _encoder_trainer(tmp_path, steps=20):
    from latentfit import load_model

    base = load_model("latentfit-msh", 1)
    torch.save(base.model.state_dict(), tmp_path / "base.pt")
    train, valid = _screen_like(tmp_path / "train", 6, seed=1), _screen_like(tmp_path / "valid", 4, seed=2)
    config = TrainConfig(train_dirs=[str(train)], valid_dir=str(valid), valid_images=4, valid_crop=192,
                         init_from=str(tmp_path / "base.pt"), trainable="encoder", lmbda=base.lmbda, steps=steps,
                         batch_size=4, patch_size=128, lr=3e-5, seed=0)  # 1e-4 overshoots here
    return base, Trainer(config, tmp_path / "run")


@pytest.mark.slow  # about 15 s on 2 quiet cores
def test_fine_tuning_the_encoder_lowers_the_true_loss_and_files_decode_with_the_base_model(tmp_path):
    from latentfit import RefinementConfig, decode, encode, load_image
    from latentfit.models.registry import load_checkpoint

    base, trainer = _encoder_trainer(tmp_path)
    assert trainer.base_digest == base.digest
    before = trainer.validate()
    for _ in range(20):
        trainer.train_step()
    after = trainer.validate()
    assert after["loss"] < before["loss"]
    state = trainer.model.state_dict()
    changed = {k.split(".")[0] for k, v in base.model.state_dict().items() if not torch.equal(state[k], v)}
    assert changed == {"g_a", "h_a"}  # nothing the decoder reads moved

    trainer.export(tmp_path / "enc.pt", {"name": "screen-enc", "quality": 1,
                                          "base": {"name": "latentfit-msh", "quality": 1}})
    stored = torch.load(tmp_path / "enc.pt", weights_only=True)
    assert stored and all(k.startswith(("g_a.", "h_a.")) for k in stored)
    card = json.loads((tmp_path / "enc.json").read_text())
    assert card["kind"] == "encoder" and card["base"]["weights_digest"] == base.digest.hex()

    warm = load_checkpoint(tmp_path / "enc.pt")
    assert (warm.name, warm.quality, warm.digest, warm.encoder) == ("latentfit-msh", 1, base.digest, "screen-enc")
    assert not torch.equal(warm.model.g_a[0].weight, base.model.g_a[0].weight)
    image = load_image(tmp_path / "valid" / "0.png")
    result = encode(image, warm, RefinementConfig(method="none"))
    assert result.stats["model"] == "screen-enc" and result.stats["decoder"] == "latentfit-msh"
    assert result.data != encode(image, base, RefinementConfig(method="none")).data  # the new encoder was used
    assert (decode(result.data, base) == result.decoded).all()  # the unchanged base model decodes it


def test_an_encoder_file_is_refused_by_other_weights_and_may_hold_only_encoder_tensors(tmp_path):
    from latentfit import load_model
    from latentfit.models.weights import apply_encoder, export_encoder

    base = load_model("latentfit-msh", 1)
    export_encoder(base.model, tmp_path / "enc.pt", {"name": "e", "base": {"name": "latentfit-msh", "quality": 1}},
                   base.digest)
    other = load_model("latentfit-msh", 2)
    untouched = other.model.g_a[0].weight.clone()
    with pytest.raises(LatentfitError, match=r"enc\.pt: an encoder for latentfit-msh q1 .* not for the loaded model"):
        apply_encoder(other.model, tmp_path / "enc.pt")
    assert torch.equal(other.model.g_a[0].weight, untouched)

    state = torch.load(tmp_path / "enc.pt", weights_only=True)
    state["g_s.0.weight"] = base.model.g_s[0].weight.half()
    torch.save(state, tmp_path / "enc.pt")
    with pytest.raises(LatentfitError, match=r"enc\.pt: holds tensors an encoder file may not change \(g_s\.0\.weight"):
        apply_encoder(base.model, tmp_path / "enc.pt")
    (tmp_path / "enc.json").write_text(json.dumps({"name": "e"}))
    with pytest.raises(LatentfitError, match=r"enc\.pt: not an encoder file"):
        apply_encoder(base.model, tmp_path / "enc.pt")


def test_encoder_fine_tuning_needs_a_trained_model(tmp_path):
    folder = DATA / "train" / "cid22-valid"
    if not folder.is_dir():
        missing_data(f"training data at {folder}")
    with pytest.raises(LatentfitError, match="--finetune encoder fine-tunes a trained model"):
        Trainer(TrainConfig(train_dirs=[str(folder)], N=16, M=24, trainable="encoder"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_bundled_warm_start_encoders_keep_the_base_decoders():
    from latentfit.models.registry import bundled_models, load_model

    warm = [s for s in bundled_models() if s.card.get("kind") == "encoder"]
    assert warm, "no bundled encoder files"
    for spec in warm:
        model = load_model(spec.name, spec.quality)
        base = load_model(spec.card["base"]["name"], spec.card["base"]["quality"])
        assert model.digest == base.digest and model.name == base.name
        ours, theirs = model.model.state_dict(), base.model.state_dict()
        assert all(torch.equal(ours[k], v) for k, v in theirs.items() if not k.startswith(("g_a.", "h_a.")))


def test_closed_loop_passes_lower_the_true_loss_and_never_start_above_the_encoder(bundled_model, kodak_crop):
    """Analysis by synthesis (`LatentModel.closed_loop_analysis`): the returned latents' true loss is
    the one reported, a few small passes lower it on a real photo, and passes that over-correct are
    not taken (pass 0, the encoder's own latents, is a candidate)."""
    x = kodak_crop.tensor
    lmbda = bundled_model.lmbda
    plain = bundled_model.true_rate_distortion(bundled_model.analysis(x), x, lmbda).loss
    latents, terms, _ = bundled_model.closed_loop_analysis(x, x, lmbda, passes=4, step=0.05)
    assert float(terms.loss) == pytest.approx(float(bundled_model.true_rate_distortion(latents, x, lmbda).loss))
    assert float(terms.loss) < float(plain)
    _, none, _ = bundled_model.closed_loop_analysis(x, x, lmbda, passes=0, step=0.05)
    assert float(none.loss) == float(plain)
    _, overshoot, _ = bundled_model.closed_loop_analysis(x, x, lmbda, passes=1, step=1.0)  # a whole y − g_a(x̂): far too much
    assert float(overshoot.loss) == float(plain)
    _, late, _ = bundled_model.closed_loop_analysis(x, x, lmbda, passes=4, step=0.05,
                                                   deadline=Deadline.start(budget=0.0))
    assert float(late.loss) == float(plain)  # no pass fits before a deadline already past


def test_a_time_budget_too_small_for_a_pass_writes_the_encoders_file(bundled_model, kodak_crop):
    from latentfit import RefinementConfig, encode

    plain = encode(kodak_crop, bundled_model, RefinementConfig(method="none"))
    hurried = encode(kodak_crop, bundled_model, RefinementConfig(method="none", closed_loop=8, time_budget=1e-3))
    assert hurried.data == plain.data


def test_a_closed_loop_start_is_what_none_writes_and_the_plain_model_decodes_it(bundled_model, kodak_crop):
    from latentfit import RefinementConfig, decode, encode

    plain = encode(kodak_crop, bundled_model, RefinementConfig(method="none"))
    start = encode(kodak_crop, bundled_model, RefinementConfig(method="none", closed_loop=3))
    assert start.data != plain.data
    assert start.stats["closed_loop"] == 3 and start.stats["config"]["start"]["closed_loop"] == 3
    assert start.stats["true_loss_final"] == start.stats["true_loss_initial"] < plain.stats["true_loss_final"]
    assert (decode(start.data, bundled_model) == start.decoded).all()
    # and refinement starts from it: the first trace point is the closed loop's loss
    refined = encode(kodak_crop, bundled_model, RefinementConfig(method="sga+ssl", steps=10, closed_loop=3))
    assert refined.refinement.trace[0].true_loss == pytest.approx(start.stats["true_loss_final"])
    assert refined.stats["true_loss_final"] <= start.stats["true_loss_final"]
