"""Shared fixtures: tiny KBs and configs in temporary folders (never the user's ~/.alime)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alime.config import AppConfig, PathsConfig

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

QA_PAIRS = [
    ("什么 时候 发货", "亲 , 付款 后 48 小时 内 发货 哦"),
    ("发 什么 快递", "默认 发 中通 快递 哦"),
    ("可以 包邮 吗", "满 99 元 包邮 的 亲"),
    ("怎么 退货", "七天 无理由 退货 , 请 在 订单 页 申请"),
    ("有 优惠券 吗", "店铺 首页 可以 领 优惠券"),
    ("这个 是 正品 吗", "保证 正品 , 假 一 赔 十"),
    ("尺码 怎么 选", "参考 详情 页 的 尺码 表"),
    ("能 便宜 点 吗", "已经 是 最低价 了 亲"),
    ("什么 时候 到货", "一般 三 到 五 天 到货"),
    ("可以 改 地址 吗", "发货 前 可以 修改 地址"),
    ("有 赠品 吗", "下单 送 小礼物 一份"),
    ("怎么 付款", "支持 支付宝 和 花呗"),
    ("退款 多久 到账", "退款 一般 一 到 三 个 工作日 到账"),
    ("质量 怎么样", "质量 很 好 的 , 放心 购买"),
    ("有 现货 吗", "有 现货 , 当天 发货"),
    ("可以 开 发票 吗", "可以 开 电子 发票"),
    ("颜色 有 色差 吗", "实物 拍摄 , 色差 很 小"),
    ("客服 在 吗", "在 的 亲 , 请问 有 什么 可以 帮 您"),
    ("怎么 联系 人工", "请 稍等 , 为 您 转接 人工 客服"),
    ("会 不会 掉色", "不会 掉色 的 , 请 放心"),
]


@pytest.fixture
def tiny_tsv(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.tsv"
    path.write_text("".join(f"{q}\t{a}\n" for q, a in QA_PAIRS), encoding="utf-8")
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> AppConfig:
    """A config whose KB and index live in tmp_path, with no model."""
    return AppConfig(paths=PathsConfig(kb=str(tmp_path / "kb.sqlite"), model="none"))
