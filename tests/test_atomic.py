"""atomic_write: the one write-beside-then-rename that every file the workflow owns goes through."""

import pytest

from smallcnn.atomic import atomic_write


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "sums.json"
    target.write_text('{"version": 1}')
    with pytest.raises(TypeError), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise TypeError("the writer failed")
    assert target.read_text() == '{"version": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["sums.json"]


@pytest.mark.parametrize("durable", [False, True])
def test_the_new_content_replaces_the_file_from_beside_it(tmp_path, durable):
    target = tmp_path / "new" / "state.json"
    with atomic_write(target, prefix=".", durable=durable) as tmp:
        assert tmp.parent == target.parent and tmp.name == ".state.json.tmp"
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]
