"""`latentfit.pipeline.encode`: the stages in order, each measured, and the file they describe."""

import pytest

from latentfit import RefinementConfig, decode, encode


def test_the_stages_time_parts_add_up_to_the_encode_and_describe_its_file(bundled_model, kodak_crop):
    steps = []
    result = encode(kodak_crop, bundled_model, RefinementConfig(steps=6, evaluate_every=3),
                    progress=lambda step, planned, record: steps.append(step))
    stats = result.stats
    assert steps == list(range(1, 7)) and stats["steps_run"] == 6
    parts = stats["read_seconds"] + stats["refine_seconds"] + stats["coding_seconds"] + stats["check_seconds"]
    assert 0 < parts <= stats["seconds"] + 1e-6
    assert min(stats[k] for k in ("refine_seconds", "coding_seconds", "check_seconds")) > 0
    assert stats["bytes"] == len(result.data) and (decode(result.data, bundled_model) == result.decoded).all()
    assert stats["true_loss_final"] <= stats["true_loss_initial"]  # verify: the file is never worse than the start


def test_a_family_without_a_target_is_refused(bundled_model, kodak_crop):
    from latentfit.errors import LatentfitError

    with pytest.raises(LatentfitError, match="family of models together with a target"):
        encode(kodak_crop, [bundled_model, bundled_model], RefinementConfig(method="none"))
