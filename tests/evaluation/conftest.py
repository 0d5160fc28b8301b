"""Tiny E-commerce-format fixtures for the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from alime.kb.formats import EcommerceRow

DIALOGUES = [
    (("在 吗", "什么 时候 发货"), "付款 后 48 小时 内 发货"),
    (("你好",), "发 中通 快递"),
    (("可以 包邮 吗",), "满 99 包邮"),
    (("怎么 退货",), "七天 无理由 退货"),
    (("有 优惠券 吗",), "首页 领 优惠券"),
    (("正品 吗",), "保证 正品"),
    (("尺码 怎么 选",), "参考 尺码 表"),
    (("便宜 点",), "已经 最低价"),
    (("什么 时候 到货",), "三 到 五 天 到货"),
    (("改 地址",), "发货 前 可以 改 地址"),
    (("有 赠品 吗",), "送 小礼物"),
    (("怎么 付款",), "支付宝 付款"),
    (("退款 多久",), "退款 三 天 到账"),
]


@pytest.fixture
def rows() -> list[EcommerceRow]:
    return [
        EcommerceRow(1, turns, response, i + 1) for i, (turns, response) in enumerate(DIALOGUES)
    ]


def group_lines(turns: str, responses: list[str], true_index: int) -> str:
    return "".join(f"{int(i == true_index)}\t{turns}\t{r}\n" for i, r in enumerate(responses))


@pytest.fixture
def groups_file(tmp_path: Path) -> Path:
    """Two groups of 10: the true reply shares words with the query and is the shortest."""
    fillers = [f"无关 回复 {i} 号 很 长 的 句子" for i in range(9)]
    text = group_lines(
        "在 吗\t什么 时候 发货", fillers[:3] + ["48 小时 内 发货"] + fillers[3:], 3
    ) + group_lines("怎么 退货", ["七天 无理由 退货", *fillers], 0)
    path = tmp_path / "groups.txt"
    path.write_text(text, encoding="utf-8")
    return path
