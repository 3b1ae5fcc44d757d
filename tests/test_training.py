import json

import pytest
import torch

from latentfit.training import TrainConfig, Trainer

from .conftest import DATA, missing_data


def tiny_config(**changes) -> TrainConfig:
    folder = DATA / "train" / "cid22-valid"
    if not folder.is_dir():
        missing_data(f"training data at {folder}")
    fields = dict(train_dirs=[str(folder)], architecture="mbt2018-mean", N=16, M=24, lmbda=0.01, steps=40,
                  batch_size=4, patch_size=64, lr=1e-3, checkpoint_every=1000, validate_every=1000, seed=3)
    fields.update(changes)
    return TrainConfig(**fields)


def test_tiny_model_learns(tmp_path):
    trainer = Trainer(tiny_config(), tmp_path)
    losses = [trainer.train_step()["loss"] for _ in range(40)]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_resumed_run_continues_exactly(tmp_path):
    straight = Trainer(tiny_config(steps=4), tmp_path / "a")
    straight_losses = [straight.train_step()["loss"] for _ in range(4)]

    first = Trainer(tiny_config(steps=4), tmp_path / "b")
    first.train_step(), first.train_step()
    first.save_checkpoint()
    torch.manual_seed(12345)  # a fresh process would have other global RNG state
    resumed = Trainer(tiny_config(steps=4), tmp_path / "b")
    assert resumed.resumed and resumed.step == 2
    assert [resumed.train_step()["loss"] for _ in range(2)] == straight_losses[2:]


def test_run_stops_at_its_step_count_and_exports_loadable_weights(tmp_path):
    from latentfit.models.registry import load_checkpoint
    from latentfit.models.weights import weights_digest

    trainer = Trainer(tiny_config(steps=3, valid_dir=str(DATA / "train" / "cid22-valid"), valid_images=2,
                                  valid_crop=64, validate_every=3), tmp_path / "run")
    result = trainer.run(progress=False)
    assert result["finished"] and result["step"] == 3 and result["history"][-1]["step"] == 3
    exported = trainer.export(tmp_path / "w.pt", {"name": "tiny", "quality": 1})
    loaded = load_checkpoint(tmp_path / "w.pt")
    assert loaded.name == "tiny" and loaded.lmbda == pytest.approx(0.01)
    assert loaded.digest == weights_digest(exported)
    stored = torch.load(tmp_path / "w.pt", weights_only=True)
    assert stored["g_a.0.weight"].dtype == torch.float16


def test_int8_export_round_trips_exactly_and_is_smaller(tmp_path):
    from latentfit.models.architectures import build_architecture
    from latentfit.models.registry import load_checkpoint
    from latentfit.models.weights import export_weights, weights_digest

    torch.manual_seed(0)
    model = build_architecture("mbt2018-mean", 32, 48)
    fp16 = export_weights(model, tmp_path / "a.pt", {"name": "a"}, dtype="fp16")
    int8 = export_weights(model, tmp_path / "b.pt", {"name": "b"}, dtype="int8")
    assert load_checkpoint(tmp_path / "b.pt").digest == weights_digest(int8)
    assert (tmp_path / "b.pt").stat().st_size < 0.75 * (tmp_path / "a.pt").stat().st_size
    kernel, original = int8.g_a[0].weight, model.g_a[0].weight
    step = original.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    assert ((kernel - original).abs() <= 0.5 * step + 1e-6).all()
    assert not torch.equal(fp16.g_a[0].weight, int8.g_a[0].weight)


def test_mixed_export_keeps_the_transforms_in_fp16_and_the_probability_model_in_int8(tmp_path):
    from latentfit.models.architectures import build_architecture
    from latentfit.models.registry import load_checkpoint
    from latentfit.models.weights import INT8_SUFFIX, export_weights, weights_digest

    torch.manual_seed(0)
    model = build_architecture("mbt2018-mean-checkerboard", 32, 48)
    mixed = export_weights(model, tmp_path / "m.pt", {"name": "m"}, dtype="mixed")
    stored = torch.load(tmp_path / "m.pt", weights_only=True)
    assert stored["g_a.0.weight"].dtype == stored["g_s.0.weight"].dtype == torch.float16
    assert "latent_codec.hyper.h_s.0.weight" + INT8_SUFFIX in stored
    assert "latent_codec.y.context_prediction.weight" + INT8_SUFFIX in stored
    assert torch.equal(mixed.g_s[0].weight, model.g_s[0].weight.half().float())  # fp16: no int8 rounding
    assert load_checkpoint(tmp_path / "m.pt").digest == weights_digest(mixed)
    assert json.loads((tmp_path / "m.json").read_text())["weights_dtype"] == "mixed"


def test_fine_tuning_the_prior_leaves_the_transforms_and_changes_the_rest(tmp_path):
    trainer = Trainer(tiny_config(trainable="prior", steps=5), tmp_path)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    for _ in range(5):
        trainer.train_step()
    after = trainer.model.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert "g_a" not in changed and "g_s" not in changed
    assert {"h_a", "h_s", "entropy_bottleneck"} <= changed


def _screen_like(folder, count: int, seed: int, size: int = 192):
    """Images unlike the training photos: dark "words" on white lines, a coloured bar, like text on screen."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        pixels = np.full((size, size, 3), 255, np.uint8)
        pixels[:14] = rng.integers(0, 255, 3)
        for top in range(24, size - 10, 14):
            left = int(rng.integers(4, 20))
            while left < size - 12:
                width = int(rng.integers(3, 12))
                pixels[top:top + 8, left:left + width] = rng.integers(0, 90)
                left += width + int(rng.integers(2, 6))
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return folder


@pytest.mark.slow  # about 12 s on 2 quiet cores
def test_fine_tuning_the_prior_on_new_content_lowers_its_held_out_loss(tmp_path):
    from latentfit import load_model

    train, valid = _screen_like(tmp_path / "train", 6, seed=1), _screen_like(tmp_path / "valid", 4, seed=2)
    base = load_model("latentfit-msh", 1)
    torch.save(base.model.state_dict(), tmp_path / "base.pt")
    config = TrainConfig(train_dirs=[str(train)], valid_dir=str(valid), valid_images=4, valid_crop=192,
                         init_from=str(tmp_path / "base.pt"), trainable="prior", lmbda=base.lmbda, steps=20,
                         batch_size=4, patch_size=128, lr=1e-4, seed=0)
    trainer = Trainer(config, tmp_path / "run")
    before = trainer.validate()
    for _ in range(20):
        trainer.train_step()
    after = trainer.validate()
    # the prior learned the new content's statistics: fewer bits (2-3 % here) for about the same distortion
    assert after["bpp"] < 0.99 * before["bpp"] and after["loss"] < before["loss"]
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in base.model.state_dict().items() if k.startswith(("g_a.", "g_s.")))


def test_bad_training_input_is_one_line_before_anything_is_written(tmp_path):
    from latentfit.errors import LatentfitError
    from latentfit.training import training_images

    (tmp_path / "empty").mkdir()
    with pytest.raises(LatentfitError, match="no training images"):
        training_images([str(tmp_path / "empty")], 64)
    broken = _screen_like(tmp_path / "broken", 2, seed=0)
    (broken / "1.png").write_bytes(b"not a png")
    with pytest.raises(LatentfitError, match=r"1\.png: not a readable image"):
        training_images([str(broken)], 64)
    with pytest.raises(LatentfitError, match="--finetune must be one of"):
        tiny_config(trainable="decoder")
    other = Trainer(tiny_config(N=8, M=12), tmp_path / "small")
    torch.save(other.model.state_dict(), tmp_path / "small.pt")
    with pytest.raises(LatentfitError, match="small.pt: weights of another architecture or size"):
        Trainer(tiny_config(init_from=str(tmp_path / "small.pt")), tmp_path / "run")
    assert not (tmp_path / "run").exists()
