"""The chat page in headless Chromium (Debian's package), driven by Playwright."""

import shutil

import pytest

from tests.serving.conftest import request, start_server, stop_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (scripts/install-browser.sh)"
    ),
]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser.new_page(locale="zh-CN")
        browser.close()


def ask(page, text):
    count = page.locator(".msg.bot, .msg.error").count()
    page.fill("#query", text)
    page.click("#send")
    page.wait_for_function(
        "n => document.querySelectorAll('.msg.bot, .msg.error').length > n",
        arg=count,
        timeout=30_000,
    )
    return page.locator(".msg.bot, .msg.error").last


def test_chinese_question_shows_answer_source_and_candidates(server, page):
    base, _ = server
    page.goto(base + "/")
    reply = ask(page, "亲，什么时候发货呀？")
    assert reply.get_attribute("data-source") == "retrieval"
    assert reply.locator(".badge").inner_text().startswith("知识库")
    assert reply.locator(".answer").inner_text().strip()
    assert "score" in reply.locator(".score").inner_text()
    assert not reply.locator("table.cands").is_visible()
    page.check("#show-candidates")
    assert reply.locator("table.cands").is_visible()
    assert reply.locator("table.cands tr").count() > 1


def test_markup_is_shown_as_text_not_run(server, page):
    base, _ = server
    page.goto(base + "/")
    payload = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    ask(page, payload)
    mine = page.locator(".msg.me").last
    assert mine.inner_text() == payload
    assert page.evaluate("window.__pwned") is None
    assert page.locator(".msg img").count() == 0


def test_handoff_rule_and_evidence_are_shown(server, page):
    base, _ = server
    page.goto(base + "/")
    reply = ask(page, "我要投诉")
    assert reply.get_attribute("data-rule") == "complaint"
    assert reply.get_attribute("data-handoff") == "true"
    assert reply.locator(".handoff").inner_text().startswith("已转人工")
    assert reply.locator(".rule").inner_text() == "rule: complaint"
    assert reply.locator(".evidence").inner_text() == "matched: 投诉"
    faq = ask(page, "亲，什么时候发货呀？")
    assert faq.get_attribute("data-handoff") == "false" and faq.locator(".handoff").count() == 0
    assert faq.locator(".rule").inner_text() == "rule: faq"
    assert " / T " in faq.locator(".score").inner_text()
    rephrase = ask(page, "asdfgh")
    assert rephrase.get_attribute("data-rule") == "gibberish"
    assert rephrase.locator(".handoff").count() == 0  # asked to rephrase, not handed off


def test_waiting_indicator_while_the_reply_is_computed(server, page):
    base, _ = server
    page.goto(base + "/")
    held = []
    page.route("**/api/chat", lambda route: held.append(route))  # held until the check is done
    page.fill("#query", "什么时候发货")
    page.click("#send")
    page.wait_for_selector(".msg.pending", timeout=10_000)
    assert page.locator(".msg.pending").inner_text().startswith("正在思考")
    assert page.locator("#send").is_disabled() and page.locator(".msg.bot").count() == 0
    page.wait_for_function("() => true")  # let the route event arrive
    assert len(held) == 1
    held[0].continue_()
    page.wait_for_selector(".msg.bot", timeout=30_000)
    assert page.locator(".msg.pending").count() == 0 and not page.locator("#send").is_disabled()


def test_inline_favicon_and_no_outside_requests(server, page):
    base, _ = server
    urls = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto(base + "/")
    ask(page, "包邮吗")
    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href.startswith("data:image/svg+xml,")
    assert urls and all(u.startswith(base) or u.startswith("data:") for u in urls), urls


def test_header_fits_a_390_px_phone(server):
    from playwright.sync_api import sync_playwright

    base, _ = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(locale="zh-CN", viewport={"width": 390, "height": 844})
        page.goto(base + "/")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        header = page.locator("header").bounding_box()
        assert header["width"] <= 390 and header["height"] <= 56  # one line, not three
        for part in ("header h1", "header .toggle"):
            box = page.locator(part).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, part
        h1 = page.locator("header h1").bounding_box()
        toggle = page.locator("header .toggle").bounding_box()
        assert h1["x"] + h1["width"] <= toggle["x"]  # side by side, not overlapping
        ask(page, "你好")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        browser.close()


@pytest.fixture
def model_server(tmp_path):
    """`alime serve` with the bundled model (one worker) and G = 0: the bundled G turns
    generation off (docs/evaluation.md), this page test needs a generated reply."""
    base, proc = start_server(
        tmp_path, config_text="[serve]\nworkers = 1\n[engine]\ngeneration_threshold = 0.0\n"
    )
    yield base, proc
    stop_server(proc)


@pytest.mark.slow
def test_generated_reply_shows_its_score_against_g(model_server, page):
    base, _ = model_server
    t = request(base + "/readyz")[1]["threshold"]
    for query in ("你们老板喜欢什么颜色的猫", "你喜欢什么电影", "发sf吗", "帮我看看这个"):
        body = request(base + "/api/chat", {"query": query})[1]
        if body["rule"] == "generation":
            break
    else:
        pytest.fail("none of the off-topic queries was answered by generation")
    assert body["threshold"] != t and body["score"] >= body["threshold"]
    page.goto(base + "/")
    reply = ask(page, query)
    assert reply.get_attribute("data-source") == "generation"
    assert reply.locator(".rule").inner_text() == "rule: generation"
    assert reply.locator(".score").inner_text() == (
        f"score {body['score']:.3f} / G {body['threshold']:.3f}"
    )
