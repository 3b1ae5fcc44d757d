"""`precision`: the proxy's synthesis transform in bfloat16; the true loss and the file stay fp32."""

import pytest
import torch

from latentfit import RefinementConfig, decode, encode
from latentfit.config import resolve_precision
from latentfit.errors import LatentfitError
from latentfit.models.adapter import BFloat16


def test_precision_is_checked_and_recorded_only_when_it_is_not_fp32():
    with pytest.raises(LatentfitError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        RefinementConfig(precision="fp16")
    assert "precision" not in RefinementConfig(precision="fp32").to_dict()["runtime"]  # records from before it existed
    for precision in ("auto", "bf16"):
        recorded = RefinementConfig(precision=precision, steps=20).to_dict()
        assert recorded["runtime"]["precision"] == precision
        assert RefinementConfig.from_dict(recorded).precision == precision


def test_auto_means_bf16_only_on_a_cpu_with_native_bfloat16(monkeypatch):
    for avx512_bf16, amx, expected in [(True, False, "bf16"), (False, True, "bf16"), (False, False, "fp32")]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert resolve_precision("auto", "cpu") == expected
        assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cuda") == "fp32"  # not measured on a GPU yet


def test_the_bf16_view_runs_g_s_in_bfloat16_and_hands_back_float32(bundled_model):
    view = bundled_model.proxy_view(channels_last=True, precision="bf16")
    assert isinstance(view.model.g_s, BFloat16) and not isinstance(bundled_model.model.g_s, BFloat16)
    y = torch.randn(1, 192, 4, 4)
    with torch.no_grad():
        low, full = view.model.g_s(y), bundled_model.model.g_s(y)
    assert low.dtype == torch.float32 and not torch.equal(low, full)
    assert (low - full).abs().max() < 0.05  # bfloat16 rounding, not another function


def test_a_bf16_refinement_lowers_the_true_loss_and_its_file_is_exactly_what_it_reports(bundled_model, kodak_crop):
    result = encode(kodak_crop, bundled_model, RefinementConfig(steps=30, precision="bf16"))
    assert result.stats["precision"] == "bf16"
    assert result.refinement.final.loss < 0.97 * result.refinement.initial.loss
    true = bundled_model.true_rate_distortion(result.refinement.latents, kodak_crop.tensor, bundled_model.lmbda)
    assert float(true.loss) == result.refinement.final.loss  # fp32 true loss of the kept latents
    assert (decode(result.data, bundled_model) == result.decoded).all()
