import io

import pytest

from alime.evaluation.corpus import Group, read_groups, read_true_rows, write_groups


def test_reads_groups_with_the_real_response_anywhere(groups_file):
    groups = read_groups(groups_file)
    assert [g.true_index for g in groups] == [3, 0]
    assert groups[0].query == "什么 时候 发货" and groups[0].context == ("在 吗",)
    assert groups[0].true_response == "48 小时 内 发货"
    assert groups[1].line == 11
    assert len(read_groups(groups_file, limit=1)) == 1


def test_round_trip(groups_file):
    buf = io.StringIO()
    assert write_groups(read_groups(groups_file), buf) == 2
    assert buf.getvalue() == groups_file.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: lines[:15], ":11: last group has 5 line(s)"),
        (
            lambda lines: ["0" + ln[1:] if i == 3 else ln for i, ln in enumerate(lines)],
            ":1: group of lines 1-10 has 0 label-1",
        ),
        (
            lambda lines: ["1" + ln[1:] if i == 4 else ln for i, ln in enumerate(lines)],
            ":1: group of lines 1-10 has 2 label-1",
        ),
        (
            lambda lines: ["2" + ln[1:] if i == 6 else ln for i, ln in enumerate(lines)],
            ":7: label must be 0 or 1",
        ),
        (
            lambda lines: ["0\tonly\n" if i == 12 else ln for i, ln in enumerate(lines)],
            ":13: expected 'label",
        ),
        (
            lambda lines: [
                ln.replace("什么", "哪") if i == 5 else ln for i, ln in enumerate(lines)
            ],
            ":6: context differs",
        ),
    ],
)
def test_bad_files_name_file_and_line(groups_file, edit, message):
    lines = groups_file.read_text(encoding="utf-8").splitlines(keepends=True)
    groups_file.write_text("".join(edit(lines)), encoding="utf-8")
    with pytest.raises(
        ValueError,
        match=str(groups_file.name) + ".*" + message.replace("(", r"\(").replace(")", r"\)"),
    ):
        read_groups(groups_file)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no data rows"):
        read_groups(path)


def test_read_dialogues_keeps_label_one_lines(groups_file):
    rows = read_true_rows(groups_file)
    assert [r.line for r in rows] == [4, 11]
    assert isinstance(Group(("q",), ("a", "b"), 1, 1).true_response, str)
