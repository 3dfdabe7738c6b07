"""The chat page in a real headless Chromium (Debian's, driven by Selenium): Korean typed
and answered with the circuits' drafts, the insights chart. Screenshots are kept as test
artifacts in test-artifacts/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from echo.config import REPO_ROOT
from tests.e2e.harness import GUEST_FACT, memory_ready

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(instant):
    # instant first: an app deployed while the browser holds a keep-alive connection is not
    # routed on that connection (the proxy's old configuration keeps serving it).
    if not (CHROMIUM and DRIVER):
        pytest.skip("Debian's chromium and chromium-driver are not installed (`make test` installs them where apt-get can)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000", "--lang=ko-KR"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def screenshot(browser, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    browser.save_screenshot(str(path))
    return path


def wait(browser, condition, timeout: float = 180):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(lambda _: condition())


def ask_as_user(browser, echo, user: str, prompt: str):
    """A fresh tab, the user's name and key typed in, prompt sent: its exchange once answered."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from echo.brain.users import user_key

    browser.get(f"{echo.url}/ui/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    browser.find_element(By.ID, "user").send_keys(user)
    browser.find_element(By.ID, "token").send_keys(user_key(echo.token, user))
    browser.find_element(By.ID, "prompt").send_keys(prompt, Keys.ENTER)
    exchange = wait(browser, lambda: (e := browser.find_elements(By.CSS_SELECTOR, "#log .exchange")) and e[0])
    wait(browser, lambda: exchange.find_element(By.CSS_SELECTOR, ".status").text == "" and exchange.find_element(By.CSS_SELECTOR, ".reply").text)
    return exchange


def test_a_korean_message_gets_a_streamed_reply_with_the_circuits_drafts(echo, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{echo.url}/ui/")
    browser.find_element(By.ID, "token").send_keys(echo.token)
    prompt = browser.find_element(By.ID, "prompt")
    prompt.send_keys("안녕")
    # Enter while an IME is still composing ends the composition: nothing may be sent.
    browser.execute_script(
        "const p = document.getElementById('prompt');"
        "p.dispatchEvent(new CompositionEvent('compositionstart'));"
        "p.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', isComposing: true, bubbles: true, cancelable: true}));"
        "p.dispatchEvent(new CompositionEvent('compositionend', {data: '녕'}));"
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#log .exchange") == []
    prompt.send_keys(", 오늘 기분이 어때?")
    prompt.send_keys(Keys.ENTER)
    exchange = wait(browser, lambda: (e := browser.find_elements(By.CSS_SELECTOR, "#log .exchange")) and e[0])
    assert exchange.find_element(By.CSS_SELECTOR, ".you").text == "안녕, 오늘 기분이 어때?"
    seen_partial = wait(browser, lambda: exchange.find_element(By.CSS_SELECTOR, ".reply").text, timeout=120)
    assert seen_partial  # text arrived while the circuits were still answering or just after
    wait(
        browser,
        lambda: all(
            "done" in d.get_attribute("class") or "failed" in d.get_attribute("class") for d in exchange.find_elements(By.CSS_SELECTOR, "details.circuit")
        ),
    )
    wait(browser, lambda: exchange.find_element(By.CSS_SELECTOR, ".status").text == "")
    for summary in exchange.find_elements(By.CSS_SELECTOR, "details.circuit summary"):
        summary.click()  # open the three drafts
    drafts = {d.get_attribute("data-circuit"): d.find_element(By.TAG_NAME, "pre").text for d in exchange.find_elements(By.CSS_SELECTOR, "details.circuit")}
    assert set(drafts) == {"self", "emotion", "creation"} and all(drafts.values())
    reply = exchange.find_element(By.CSS_SELECTOR, ".reply").text

    # concat: the reply starts from the self circuit's draft, rendered as Markdown (a list's
    # numbers, emphasis and code marks are the page's, not the text's)
    def words(text: str) -> str:
        return re.sub(r"\W+", "", re.sub(r"^\s*(\d+[.)]|[-*+])\s+", "", text))

    assert words(drafts["self"])[:12] in words(reply)
    assert screenshot(browser, "chat.png").stat().st_size > 10_000
    assert browser.execute_script("return sessionStorage.getItem('echo-token')") == echo.token
    assert browser.execute_script("return localStorage.length") == 0  # the token stays in this tab


def test_the_insights_view_draws_lines_per_day_and_the_feelings(echo, browser):
    from selenium.webdriver.common.by import By

    memory_ready(echo)
    browser.get(f"{echo.url}/ui/")
    browser.execute_script("sessionStorage.setItem('echo-token', arguments[0])", echo.token)
    browser.refresh()
    browser.find_element(By.ID, "show-insights").click()
    chart = browser.find_element(By.ID, "lines-chart")
    wait(browser, lambda: int(chart.get_attribute("data-bars") or 0) > 0, timeout=30)
    assert int(chart.get_attribute("data-bars")) >= 3 and int(chart.get_attribute("data-max")) > 0
    assert "parts" in browser.find_element(By.ID, "insights-summary").text
    feelings = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#emotions li")]
    assert any(f.startswith("gratitude: ") for f in feelings) and any(f.startswith("joy: ") for f in feelings)
    assert screenshot(browser, "insights.png").stat().st_size > 5_000


def test_a_user_with_their_key_sees_their_own_memories_in_the_page(echo, browser):
    from selenium.webdriver.common.by import By

    memory_ready(echo)
    exchange = ask_as_user(browser, echo, "minji", "양양에서 뭘 배운다고 했었지?")
    exchange.find_element(By.CSS_SELECTOR, "details.memories summary").click()
    cited = [li.text for li in exchange.find_elements(By.CSS_SELECTOR, "details.memories li")]
    assert any(GUEST_FACT[0] in c for c in cited), cited  # her surfing, with where it is written
    assert all("/minji/" in c for c in cited), cited  # and nobody else's


def test_the_page_keeps_a_conversation_across_messages_and_the_button_starts_a_new_one(instant, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{instant.url}/ui/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()

    def send(text: str) -> str:
        before = len(browser.find_elements(By.CSS_SELECTOR, "#log .exchange"))
        browser.find_element(By.ID, "prompt").send_keys(text, Keys.ENTER)
        wait(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, "#log .exchange")) > before)
        exchange = browser.find_elements(By.CSS_SELECTOR, "#log .exchange")[-1]
        wait(browser, lambda: exchange.find_element(By.CSS_SELECTOR, ".reply").text and exchange.find_element(By.CSS_SELECTOR, ".status").text == "")
        return browser.execute_script("return sessionStorage.getItem('echo-conversation')")

    first = send("내 이름은 하늘이야")
    second = send("내 이름이 뭐라고 했지?")
    assert first and second == first  # the second message went on with the first's conversation
    browser.find_element(By.ID, "new-conversation").click()
    assert browser.find_elements(By.CSS_SELECTOR, "#log .exchange") == []
    third = send("처음 뵙겠습니다")
    assert third and third != first
    screenshot(browser, "conversation.png")


def test_the_page_shows_the_facts_an_answer_used_and_what_echo_knows_with_a_delete_per_fact(echo, browser):
    import json

    import httpx
    from selenium.webdriver.common.by import By

    memory_ready(echo)
    text = "Minji keeps a sourdough starter named Bubbles"
    line = json.dumps({"user": "minji", "text": text, "kind": "profile", "cites": [{"path": GUEST_FACT[0], "line_start": 1, "line_end": 2}]})
    done = httpx.post(f"{echo.url}/api/memory/facts/import", content=line, headers={"Authorization": f"Bearer {echo.token}"}, timeout=30)
    assert done.status_code == 200, done.text
    exchange = ask_as_user(browser, echo, "minji", "What should I bake this weekend?")
    exchange.find_element(By.CSS_SELECTOR, "details.facts summary").click()
    used = [li.text for li in exchange.find_elements(By.CSS_SELECTOR, "details.facts li")]
    assert any(text in u and "about you" in u for u in used), used

    fact_id = done.json()["ids"][0]
    browser.find_element(By.ID, "show-facts").click()

    def shown() -> list[str]:  # read in one go: the list is drawn anew on every load
        return browser.execute_script("return [...document.querySelectorAll('#facts-list li.fact')].map((li) => li.textContent)")

    wait(browser, lambda: any(text in t for t in shown()), timeout=30)
    assert all("/minji/" in t for t in shown())  # hers only
    screenshot(browser, "facts.png")
    browser.find_element(By.CSS_SELECTOR, f'#facts-list li.fact[data-id="{fact_id}"] button.delete').click()
    wait(browser, lambda: not any(text in t for t in shown()), timeout=30)
    listed = httpx.get(f"{echo.url}/api/memory/facts", params={"user": "minji"}, headers={"Authorization": f"Bearer {echo.token}"}, timeout=30).json()
    assert text not in {f["text"] for f in listed["facts"]}
    browser.find_element(By.ID, "facts-undo").click()  # a delete misclicked costs nothing
    wait(browser, lambda: any(text in t for t in shown()), timeout=30)


def test_the_page_lists_conversations_reads_them_back_and_renders_replies_as_safe_markdown(instant, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from echo.brain.users import user_key

    browser.get(f"{instant.url}/ui/")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    browser.find_element(By.ID, "user").send_keys("pages")
    browser.find_element(By.ID, "token").send_keys(user_key(instant.token, "pages"))

    def send(text: str):
        before = len(browser.find_elements(By.CSS_SELECTOR, "#log .exchange"))
        browser.execute_script("const p = document.getElementById('prompt'); p.value = arguments[0];", text)  # newlines kept: send_keys would press Enter
        browser.find_element(By.ID, "prompt").send_keys(Keys.ENTER)
        wait(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, "#log .exchange")) > before)
        exchange = browser.find_elements(By.CSS_SELECTOR, "#log .exchange")[-1]
        wait(browser, lambda: exchange.find_element(By.CSS_SELECTOR, ".reply").text and exchange.find_element(By.CSS_SELECTOR, ".status").text == "")
        return exchange

    def listed():
        return [(i.get_attribute("data-id"), "current" in i.get_attribute("class")) for i in browser.find_elements(By.CSS_SELECTOR, "#conversation-list li")]

    hostile = "Look: <img src=x onerror=\"window.__ran = 1\"> and [a link](javascript:window.__ran=2)\n\n```python\nprint('hi')\n```"
    send("첫 번째 대화: 제주 여행")
    send(hostile)  # the instant circuits answer with the prompt: the reply holds it too
    first = browser.execute_script("return sessionStorage.getItem('echo-conversation')")
    browser.find_element(By.ID, "new-conversation").click()
    send("두 번째 대화: 빵 굽기")
    second = browser.execute_script("return sessionStorage.getItem('echo-conversation')")
    wait(browser, lambda: len(listed()) == 2, timeout=30)
    assert not browser.find_element(By.ID, "conversations").get_attribute("hidden")
    titles = [b.text.split("\n")[0] for b in browser.find_elements(By.CSS_SELECTOR, "#conversation-list button")]
    assert titles == ["두 번째 대화: 빵 굽기", "첫 번째 대화: 제주 여행"] and [current for _, current in listed()] == [True, False]

    browser.refresh()  # a reload shows the conversation the tab is in
    wait(browser, lambda: [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#log .you")] == ["두 번째 대화: 빵 굽기"], timeout=30)
    assert browser.execute_script("return sessionStorage.getItem('echo-conversation')") == second

    browser.execute_script("window.__ran = 0")
    browser.find_elements(By.CSS_SELECTOR, "#conversation-list button")[1].click()  # the other one
    wait(browser, lambda: len(browser.find_elements(By.CSS_SELECTOR, "#log .exchange")) == 2, timeout=30)
    wait(browser, lambda: [current for _, current in listed()] == [False, True], timeout=30)
    reply = browser.find_elements(By.CSS_SELECTOR, "#log .reply")[1]
    said = browser.find_elements(By.CSS_SELECTOR, "#log .you")[1].text
    assert '<img src=x onerror="window.__ran = 1">' in said and "```python" in said  # the prompt as typed, as text
    assert reply.find_element(By.CSS_SELECTOR, "pre code").text == "print('hi')"  # a Markdown code block is code
    assert reply.find_elements(By.CSS_SELECTOR, "button.copy")
    assert not browser.find_elements(By.CSS_SELECTOR, "#log [onerror]") and not reply.find_elements(By.CSS_SELECTOR, "img")  # a reply fetches nothing
    for link in reply.find_elements(By.CSS_SELECTOR, "a"):
        assert not (link.get_attribute("href") or "").startswith("javascript:")
    assert browser.execute_script("return window.__ran") == 0  # nothing in the reply ran
    send("그럼 어디서 묵을까?")  # goes on with the conversation clicked
    key = [i for i, current in listed() if current][0]
    assert browser.execute_script("return sessionStorage.getItem('echo-conversation')") == key == first
    screenshot(browser, "conversations.png")

    browser.set_window_size(390, 844)  # a phone's width: the list sits above the chat, nothing overflows sideways
    try:
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        screenshot(browser, "conversations-phone.png")
    finally:
        browser.set_window_size(1200, 1000)
