"""Journal records and their checks (`latentfit.evaluation.records`)."""

import json

import pytest

from latentfit.errors import LatentfitError
from latentfit.evaluation import EvalConfig


@pytest.mark.parametrize("broken, complaint", [
    ({"bpp": None}, "'bpp' should be float"), ({"quality": "2"}, "'quality' should be int"), ({"psnr": ...}, "without 'psnr'"),
])
def test_a_journal_line_that_is_not_a_record_is_named(tmp_path, broken, complaint):
    from latentfit.evaluation.runner import read_records

    identity = EvalConfig(datasets=[]).identity()
    good = {"cell": "k/a.png|q1|none|0", "config_id": identity, "image": "k/a.png", "quality": 1, "method": "none",
            "steps": 0, "bytes": 100, "bpp": 0.5, "psnr": 30.0}
    bad = {k: v for k, v in (good | broken).items() if v is not ...} | {"cell": "k/b.png|q1|none|0"}
    (tmp_path / "cells.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(LatentfitError, match=rf"cells.jsonl:2: results record.*{complaint}"):
        read_records(tmp_path, identity)
    (tmp_path / "cells.jsonl").write_text(json.dumps(good) + "\n")
    assert list(read_records(tmp_path, identity)) == [good["cell"]]
