"""`latentfit.evaluation.journal.Journal`: the append-only record files `eval` and the benchmarks resume from."""

import json

from hypothesis import given
from hypothesis import strategies as st

from latentfit.evaluation.journal import Journal

records = st.lists(st.dictionaries(st.text(min_size=1, max_size=5), st.integers() | st.text(max_size=5), max_size=3),
                   max_size=8)


@given(records, st.integers(1, 40))
def test_what_was_appended_is_read_back_and_a_torn_last_line_is_skipped(tmp_path_factory, written, cut):
    path = tmp_path_factory.mktemp("journal") / "sub" / "j.jsonl"
    journal = Journal(path)
    assert journal.records() == []  # no file yet: nothing done
    with journal.writer() as append:
        for record in written:
            append(record)
    assert journal.records() == written
    torn = json.dumps({"cell": "x" * 50})[:cut]  # a run killed while writing its next line
    with open(path, "a") as handle:
        handle.write(torn)
    assert journal.records() == written
    journal.append({"after": 1})  # the resumed run's first record starts a line of its own
    assert journal.records()[-1] == {"after": 1}
    assert [number for number, _ in journal.lines()][-1] == len(path.read_text().splitlines())
