"""The replies of the bundled bot to a fixed list of queries, recorded as a JSON fixture.

``tests/test_bundled_replies.py`` compares the engine's replies today with the fixture, so a
refactor that changes what the bundled artifacts answer fails. When the bundled KB, rules or
model change on purpose, regenerate the fixture and review its diff:

    PYTHONPATH=$PWD python tests/bundled_replies.py --regen

The bot is the served default (the curated KB seeded into a fresh state directory, the bundled
text files, chit-chat KB and rules) with each bundled model directory: ``data/model-int8`` (what
``alime serve`` uses) and ``data/model`` (the fp32 model it was quantized from).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "data" / "bundled_replies.json"
MODELS = ("model-int8", "model")

# Mixed on purpose: FAQ questions (as written and paraphrased), chit-chat, complaints, requests
# for a person, order status, gibberish and out-of-KB questions.
QUERIES = (
    "什么时候发货？",
    "亲，什么时候发货呀？",
    "发什么快递",
    "能便宜点吗",
    "可以退货吗",
    "七天无理由退换吗",
    "运费谁出",
    "有优惠券吗",
    "怎么修改地址",
    "这个有货吗",
    "你好",
    "谢谢",
    "再见",
    "你是机器人吗",
    "你喜欢什么电影",
    "今天天气怎么样",
    "你们老板喜欢什么颜色的猫",
    "我要投诉你们",
    "东西太差了给差评",
    "转人工",
    "找你们经理出来",
    "我的订单到哪了",
    "asdf",
    "？？？",
    "😂😂",
    "123",
)


def record(model: str, state: Path) -> list[dict[str, object]]:
    """Each query's reply from the bundled bot with ``data/<model>``, as plain data.

    Args:
        model: the bundled model directory's name under ``data/``.
        state: an empty state directory (the KB is seeded into it).

    Returns:
        One ``{"query", "answer", "source", "rule", "score"}`` per query, in order.
    """
    os.environ["ALIME_HOME"] = str(state)
    from alime.bot import build_bot
    from alime.config import BUNDLED_DATA, AppConfig

    base = AppConfig()
    config = dataclasses.replace(
        base, paths=dataclasses.replace(base.paths, model=str(BUNDLED_DATA / model))
    )
    engine = build_bot(config).engine
    out = []
    for query in QUERIES:
        reply = engine.reply(query)
        out.append(
            {
                "query": query,
                "answer": reply.answer,
                "source": reply.source.value,
                "rule": reply.rule.value,
                # The decision score (None for the rules before retrieval), to 3 places: the
                # test compares it with that tolerance.
                "score": None if reply.score is None else round(reply.score, 3),
            }
        )
    return out


def record_all() -> dict[str, list[dict[str, object]]]:
    """The replies with every bundled model, each in its own fresh state directory."""
    saved = os.environ.get("ALIME_HOME")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return {m: record(m, Path(tmp) / m) for m in MODELS}
    finally:
        if saved is None:
            os.environ.pop("ALIME_HOME", None)
        else:
            os.environ["ALIME_HOME"] = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regen", action="store_true", help=f"rewrite {FIXTURE.name}")
    args = parser.parse_args(argv)
    replies = record_all()
    text = json.dumps(replies, ensure_ascii=False, indent=1) + "\n"
    if args.regen:
        FIXTURE.write_text(text, encoding="utf-8")
        print(f"wrote {FIXTURE}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
