"""The chat page in headless Chromium (Debian's package), driven by Playwright."""

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/install-browser.sh)"),
]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


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
        "n => document.querySelectorAll('.msg.bot, .msg.error').length > n", arg=count, timeout=30_000
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
