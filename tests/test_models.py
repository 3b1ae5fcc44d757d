import json
import os

import pytest
import torch

from latentfit import load_image, load_model
from latentfit.errors import LatentfitError, ModelNotAvailableError
from latentfit.models import registry
from latentfit.models.architectures import build_architecture
from latentfit.models.weights import load_state_dict_file, weights_digest

from .conftest import kodak_image


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.hub.set_dir(str(tmp_path / "torch" / "hub"))
    yield tmp_path / "torch" / "hub" / "checkpoints"
    torch.hub.set_dir(os.path.join(os.path.expanduser("~"), ".cache", "torch", "hub"))


def test_zoo_model_loads_offline_from_the_torch_hub_cache(torch_home):
    from compressai.zoo.image import model_urls

    torch.manual_seed(0)
    model = build_architecture("bmshj2018-factorized", 128, 192)
    model.update(force=True)
    torch_home.mkdir(parents=True)
    torch.save(model.state_dict(), torch_home / os.path.basename(model_urls["bmshj2018-factorized"]["mse"][1]))
    loaded = load_model("bmshj2018-factorized", 1, download=False)
    assert loaded.source == "zoo" and loaded.lmbda == 0.0018 and loaded.stride == 16
    assert loaded.digest == weights_digest(model)
    listed = [s for s in registry.available_models() if s.source == "zoo"]
    assert [(s.name, s.quality) for s in listed] == [("bmshj2018-factorized", 1)]


def test_missing_zoo_weights_name_the_expected_cache_file(torch_home):
    with pytest.raises(ModelNotAvailableError, match=r"mbt2018-mean-3-723404a8\.pth\.tar"):
        load_model("mbt2018-mean", 3, download=False)


def test_a_checkpoint_that_needs_pickle_is_refused(tmp_path):
    import argparse

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(LatentfitError, match="evil.pt: refused, this checkpoint needs pickle"):
        load_state_dict_file(path)


@pytest.mark.parametrize("architecture", ["bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean", "mbt2018",
                                          "cheng2020-anchor", "cheng2020-attn", "mbt2018-mean-checkerboard"])
def test_checkpoint_architecture_is_inferred_from_its_shapes(tmp_path, architecture):
    model = build_architecture(architecture, 32, 48)
    model.update(force=True)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "c.pth.tar")
    loaded = registry.load_checkpoint(tmp_path / "c.pth.tar")
    assert loaded.architecture == architecture


def _bundled():
    specs = registry.bundled_models()
    assert specs, "no bundled model found in the package"
    return specs


def test_bundled_default_is_used_without_arguments():
    model = load_model()
    assert (model.name, model.quality, model.source) == (registry.DEFAULT_MODEL, registry.DEFAULT_QUALITY, "bundled")


# the default quality in the fast subset (`-m "not slow"`), the others in the whole suite
@pytest.mark.parametrize("spec", [pytest.param(spec, marks=[] if (spec.name, spec.quality) == ("latentfit-msh", 2)
                                               else pytest.mark.slow) for spec in _bundled()],
                         ids=lambda s: f"{s.name}-{s.quality}")
def test_each_bundled_model_reproduces_its_model_card(spec):
    from latentfit import RefinementConfig, encode

    from latentfit.models.weights import encoder_digest

    stored = torch.load(spec.path, weights_only=True)
    card = json.loads(open(spec.path.replace(".pt", ".json")).read())
    model = load_model(spec.name, spec.quality)
    if card.get("kind") == "encoder":  # a fine-tuned encoder over the base's decoder: files carry the base digest
        assert stored and all(k.startswith(("g_a.", "h_a.")) for k in stored)  # the analysis transforms only
        assert model.digest.hex() == card["base"]["weights_digest"]
        assert encoder_digest(model.model).hex() == card["encoder_digest"]
    else:
        assert {torch.int8, torch.float16} <= {v.dtype for v in stored.values()}  # int8 kernels (all or some)
        # Stored smaller than the same parameters in fp16 would be.
        fp16_bytes = 2 * sum(p.numel() for p in model.model.parameters())
        assert sum(v.numel() * v.element_size() for v in stored.values()) < 0.8 * fp16_bytes
        assert model.digest.hex() == card["weights_digest"]
    reference = card["kodak_images"]["kodim23"]
    result = encode(load_image(kodak_image("kodim23.png")), model, RefinementConfig(method="none"))
    assert result.stats["bytes"] == pytest.approx(reference["bytes"], rel=0.002)
    assert result.stats["psnr"] == pytest.approx(reference["psnr"], abs=0.02)


@pytest.mark.parametrize("name", sorted({s.name for s in _bundled()}))
def test_bundled_qualities_are_ordered_by_rate(name):
    cards = sorted((s.quality, s.card["kodak"]["bpp"], s.card["lmbda"]) for s in _bundled() if s.name == name)
    assert len(cards) >= 4
    assert [c[1] for c in cards] == sorted(c[1] for c in cards)
    assert [c[2] for c in cards] == sorted(c[2] for c in cards)


def test_bundled_context_model_is_the_mean_scale_model_plus_a_context_at_the_same_lambdas():
    specs = _bundled()
    msh = {s.quality: s for s in specs if s.name == "latentfit-msh"}
    ctx = {s.quality: s for s in specs if s.name == "latentfit-ctx"}
    assert set(ctx) == set(msh) == {1, 2, 3, 4}
    for quality, spec in ctx.items():
        assert spec.architecture == "mbt2018-mean-checkerboard"
        assert spec.lmbda == msh[quality].lmbda
        assert spec.card["base_weights_digest"] == msh[quality].card["weights_digest"]


@pytest.mark.parametrize("architecture,N,M", [("mbt2018", 32, 48), ("cheng2020-anchor", 32, 32), ("cheng2020-attn", 32, 32)])
def test_context_zoo_models_load_offline_from_the_torch_hub_cache(torch_home, architecture, N, M):
    from compressai.zoo.image import model_urls

    torch.manual_seed(0)
    model = build_architecture(architecture, N, M)
    model.update(force=True)
    torch_home.mkdir(parents=True)
    torch.save(model.state_dict(), torch_home / os.path.basename(model_urls[architecture]["mse"][2]))
    loaded = load_model(architecture, 2, download=False)
    assert (loaded.source, loaded.architecture, loaded.lmbda, loaded.stride) == ("zoo", architecture, 0.0035, 64)
    assert loaded.digest == weights_digest(model)
    assert [(s.name, s.quality) for s in registry.available_models() if s.source == "zoo"] == [(architecture, 2)]


def test_user_checkpoints_load_by_their_card_name_and_quality(tmp_path, monkeypatch):
    """A fine-tune's export in $LATENTFIT_HOME/checkpoints is a named model (`eval --model NAME`,
    `encode --model NAME`, rate control over its qualities, decoding its files), as `models` lists it."""
    from latentfit.models.weights import export_weights

    monkeypatch.setenv("LATENTFIT_HOME", str(tmp_path))
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    digests = {}
    for quality in (1, 3):
        torch.manual_seed(quality)
        exported = export_weights(build_architecture("mbt2018-mean", 16, 24), folder / f"mine-{quality}.pt",
                                  {"name": "mine", "quality": quality, "lmbda": 0.001 * quality})
        digests[quality] = weights_digest(exported)
    assert digests[1] != digests[3]
    for quality in (3, 1):
        model = load_model("mine", quality)
        assert (model.name, model.quality, model.digest) == ("mine", quality, digests[quality])
    assert load_model("mine").quality == 1  # no quality 2 (the default): its first
    with pytest.raises(LatentfitError, match=r"no quality 2 \(available: 1, 3\)"):
        load_model("mine", 2)
    assert [m.quality for m in registry.load_family("mine")] == [1, 3]
    with pytest.raises(LatentfitError, match="unknown model 'yours'"):
        load_model("yours", 1)
