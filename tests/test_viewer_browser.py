"""The card viewer in a real headless browser: Debian ``chromium`` + ``chromium-driver``, via Selenium.

The app runs on a real loopback server (werkzeug, in a thread) with a clock months after the fixtures'
``now``, so the page's whole path is exercised: list, prepare (dates moved), POST to the hook endpoint
as an EHR does, render, check against the expected result. Screenshots go to ``artifacts/``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from service import create_app
from service.pipeline import Engine

from support.chromium import CHROMEDRIVER, CHROMIUM, HEADLESS, headless_chromium
from support.clock import counter_uuids
from support.paths import FIXTURES, ROOT

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian 'chromium' and 'chromium-driver' (bash scripts/setup-system installs them)",
)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test dependency: bash scripts/setup")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

ARTIFACTS = ROOT / "artifacts"
ROW14 = "patient-view/27-row14-epic-imo-multicoded-tenderness.json"
HTML_TEXT = "patient-view/52-record-text-looks-like-html.json"
PAYLOAD = "<img src=x onerror=window.__vcfXss=1>"
CLOCK = datetime(2026, 11, 22, 3, 17, tzinfo=timezone(timedelta(hours=9)))
CHROMIUM_FLAGS = (*HEADLESS, "--disable-quic", "--window-size=1400,2200")


@pytest.fixture(scope="module")
def base_url(engine: Engine) -> Iterator[str]:
    app = create_app(
        {"ENGINE": engine, "CLOCK": lambda: CLOCK, "NEW_UUID": counter_uuids(), "DATABASE_URL": "sqlite://"}
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="viewer-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile"), CHROMIUM_FLAGS, 30) as driver:
        yield driver


def wait(driver: WebDriver, condition: Any, seconds: float = 20) -> Any:
    return WebDriverWait(driver, seconds).until(condition)


def open_viewer(driver: WebDriver, base_url: str) -> None:
    driver.get(base_url)
    wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")


def load_fixture(driver: WebDriver, name: str) -> None:
    Select(driver.find_element(By.ID, "fixture")).select_by_value(name)
    wait(driver, lambda d: name in d.find_element(By.ID, "about").text)


def send(driver: WebDriver) -> list[WebElement]:
    driver.find_element(By.ID, "send").click()
    wait(driver, lambda d: "HTTP" in d.find_element(By.ID, "status").text)
    return list(driver.find_elements(By.CSS_SELECTOR, "#cards article.card"))


def set_text(driver: WebDriver, element_id: str, text: str) -> None:
    # send_keys types character by character: far too slow for a FHIR bundle
    driver.execute_script("document.getElementById(arguments[0]).value = arguments[1]", element_id, text)


def screenshot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    return path


def test_a_fixture_is_replayed_and_its_cards_rendered(browser: WebDriver, base_url: str) -> None:
    open_viewer(browser, base_url)
    services = browser.find_elements(By.CSS_SELECTOR, "#services li")
    assert "vcf-patient-view" in [s.get_attribute("data-service") for s in services]
    load_fixture(browser, ROW14)
    # UTC calendar days (rules 2026.12): 2026-06-15T14:00Z (the fixture's now) to 2026-11-21T18:17Z
    # (CLOCK); in CLOCK's own zone it would be 160, the reading before 2026.12
    assert "every date moved 159 days" in browser.find_element(By.ID, "about").text
    cards = send(browser)
    assert "HTTP 200" in browser.find_element(By.ID, "status").text
    assert [c.get_attribute("data-indicator") for c in cards] == ["warning", "warning"]
    card = cards[0]
    assert card.find_element(By.CSS_SELECTOR, ".indicator").text == "WARNING"
    assert "vertebral augmentation" in card.find_element(By.CSS_SELECTOR, ".summary").text
    # the Markdown detail: bold headline, the open criteria as a table, the met ones in one line
    detail = card.find_element(By.CSS_SELECTOR, ".detail")
    assert detail.find_element(By.CSS_SELECTOR, "p strong").text.endswith("vertebral augmentation.")
    edema = detail.find_element(By.CSS_SELECTOR, "table tbody tr")
    assert "marrow edema" in edema.text
    # the card says the status in words; colouring them is the viewer's own decoration
    status = edema.find_elements(By.CSS_SELECTOR, "td")[1]
    assert status.text == "Unknown" and "status--unknown" in str(status.get_attribute("class"))
    met = next(p for p in detail.find_elements(By.CSS_SELECTOR, "p") if p.text.startswith("Met:"))
    assert "Pain NRS ≥ 5" in met.text and "Point tenderness" in met.text
    assert "Not documented (unknown, not negative): MRI marrow edema, INR, platelet count" in detail.text
    # the assessment's criteria table
    pain = card.find_element(By.CSS_SELECTOR, "table.criteria tr[data-criterion=pain_nrs_5] .status")
    assert pain.text == "met" and "status--met" in str(pain.get_attribute("class"))
    assert "recommendation: augmentation" in card.find_element(By.CSS_SELECTOR, ".chips").text
    # suggestions are buttons that show what accepting would create; links open outside, safely
    card.find_element(By.CSS_SELECTOR, ".suggestions button.recommended").click()
    assert '"resourceType": "ServiceRequest"' in card.find_element(By.CSS_SELECTOR, "pre.actions").text
    link = card.find_element(By.CSS_SELECTOR, ".links a")
    assert link.get_attribute("href").startswith("https://") and link.get_attribute("rel") == "noopener noreferrer"
    assert "Matches the fixture's expected result" in browser.find_element(By.ID, "check").text
    response = json.loads(browser.find_element(By.ID, "response").text)
    assert response["cards"][0]["extension"]["org.vcfcds"]["recommendation"] == "augmentation"
    screenshot(browser, "viewer.png")
    # no script error, no CSP violation on the way
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def _no_element_was_made(driver: WebDriver) -> None:
    assert driver.execute_script("return document.querySelectorAll('img, script:not([src])').length") == 0
    assert driver.execute_script("return window.__vcfXss === undefined")


def test_record_text_that_looks_like_html_stays_text(browser: WebDriver, base_url: str) -> None:
    open_viewer(browser, base_url)
    load_fixture(browser, HTML_TEXT)
    assert PAYLOAD in browser.find_element(By.ID, "about").text  # the fixture's description
    [card, _] = send(browser)
    assert "Matches the fixture's expected result" in browser.find_element(By.ID, "check").text
    detail = card.find_element(By.CSS_SELECTOR, ".detail").text
    # the card names the ignored Observation but never echoes the sender's id text (service/observe/redact.py)
    assert "Observation/? is not valid FHIR R4" in detail and PAYLOAD not in detail
    assert PAYLOAD in browser.find_element(By.ID, "request").get_property("value")  # the patient's name
    _no_element_was_made(browser)
    screenshot(browser, "viewer-html-text.png")

    # the same record pasted as a bare Bundle (an EHR export) goes through the wrapping endpoint
    prefetch = json.loads((FIXTURES / HTML_TEXT).read_text())["request"]["prefetch"]
    entries = [{"resource": prefetch["patient"]}]
    for key in ("conditions", "observations"):
        entries += prefetch[key]["entry"]
    set_text(browser, "paste", json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    browser.find_element(By.ID, "use-paste").click()
    wait(browser, lambda d: "pasted JSON" in d.find_element(By.ID, "about").text)
    assert PAYLOAD in browser.find_element(By.ID, "request").get_property("value")
    card = send(browser)[0]  # a bare bundle has no "now": judged at the service's clock
    assert "Observation/? is not valid FHIR R4" in card.find_element(By.CSS_SELECTOR, ".detail").text
    _no_element_was_made(browser)


def test_errors_show_the_operation_outcome_message(browser: WebDriver, base_url: str) -> None:
    open_viewer(browser, base_url)
    set_text(browser, "paste", '{"resourceType": "Bundle", "entry": []}')
    browser.find_element(By.ID, "use-paste").click()
    error = browser.find_element(By.ID, "error")
    wait(browser, lambda d: error.is_displayed())
    assert "HTTP 400: Cannot use this JSON: the Bundle holds no Patient." in error.text

    request = json.loads((FIXTURES / ROW14).read_text())["request"]
    del request["prefetch"]["conditions"]  # required data neither prefetched nor fetchable: 412
    set_text(browser, "request", json.dumps(request))
    assert send(browser) == []
    assert "HTTP 412" in browser.find_element(By.ID, "status").text
    assert "HTTP 412: " in error.text and "conditions" in error.text

    set_text(browser, "request", "{not json")
    browser.find_element(By.ID, "send").click()
    wait(browser, lambda d: "the request is not valid JSON" in error.text)


def test_the_page_cannot_parse_html_at_all(browser: WebDriver, base_url: str) -> None:
    """Trusted Types (CSP): assigning a string to an HTML sink throws on this page."""
    open_viewer(browser, base_url)
    outcome = browser.execute_script(
        "try { document.getElementById('cards').innerHTML = '<b>x</b>'; return 'parsed'; } catch (e) { return e.name; }"
    )
    assert outcome == "TypeError"


MARKDOWN_CASES = [
    (
        "**bold** and *it* and _it2_ and ~~gone~~ and `co|de`",
        "<p><strong>bold</strong> and <em>it</em> and <em>it2</em> and <del>gone</del> and <code>co|de</code></p>",
    ),
    ("snake_case_name and 2 * 3 * 4", "<p>snake_case_name and 2 * 3 * 4</p>"),
    ("***both***", "<p><strong><em>both</em></strong></p>"),
    ("\\*not em\\* \\<b\\>x\\</b\\>", "<p>*not em* &lt;b&gt;x&lt;/b&gt;</p>"),
    ('<img src=x onerror="alert(1)"> <b>raw</b>', '<p>&lt;img src=x onerror="alert(1)"&gt; &lt;b&gt;raw&lt;/b&gt;</p>'),
    ("&lt;ok&gt; &amp; &#65; &bogus;", "<p>&lt;ok&gt; &amp; A &amp;bogus;</p>"),
    ("line one  \nline two\\\nthree", "<p>line one<br>line two<br>three</p>"),
    ("# Title", "<h4>Title</h4>"),
    ("a\n\n---\n\nb", "<p>a</p><hr><p>b</p>"),
    (
        "| a | b |\n|---|:-:|\n| 1 \\| x | **2** |",
        '<table><thead><tr><th>a</th><th class="align-center">b</th></tr></thead>'
        '<tbody><tr><td>1 | x</td><td class="align-center"><strong>2</strong></td></tr></tbody></table>',
    ),
    (
        "- one\n- two\n  - nested\n\n3. third\n4. fourth",
        '<ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul><ol start="3"><li>third</li><li>fourth</li></ol>',
    ),
    ("> quoted **text**", "<blockquote><p>quoted <strong>text</strong></p></blockquote>"),
    ("```\n<b>code</b>\n```", "<pre><code>&lt;b&gt;code&lt;/b&gt;</code></pre>"),
    (
        "[ok](https://example.org/a) [bad](javascript:alert(1)) <https://x.org> ![alt](https://x.org/i.png)",
        '<p><a href="https://example.org/a" rel="noopener noreferrer" target="_blank">ok</a>'
        ' <span>bad</span> <a href="https://x.org/" rel="noopener noreferrer" target="_blank">https://x.org</a>'
        " alt</p>",
    ),
]


def test_markdown_renderer(browser: WebDriver, base_url: str) -> None:
    open_viewer(browser, base_url)
    rendered = browser.execute_script(
        "return arguments[0].map(md => { const box = document.createElement('div');"
        " box.append(window.vcfMarkdown.render(md)); return box.outerHTML.slice(5, -6); })",
        [source for source, _ in MARKDOWN_CASES],
    )
    for (source, expected), got in zip(MARKDOWN_CASES, rendered, strict=True):
        assert got == expected, source


@pytest.mark.parametrize(
    ("name", "indicators"),
    [
        ("realdata/lonnie-von-derived-vcf-row14.json", ["warning", "info"]),
        ("realdata/lonnie-von-osteoporotic-fracture-not-vertebral.json", []),
    ],
)
def test_a_real_synthea_bundle_is_wrapped_and_replayed(
    browser: WebDriver, base_url: str, name: str, indicators: list[str]
) -> None:
    open_viewer(browser, base_url)
    load_fixture(browser, name)
    request = json.loads(browser.find_element(By.ID, "request").get_property("value"))
    assert request["hook"] == "patient-view" and set(request["prefetch"]) >= {"patient", "conditions"}
    cards = send(browser)
    assert [c.get_attribute("data-indicator") for c in cards] == indicators
    if not indicators:
        assert "No cards" in browser.find_element(By.ID, "cards").text
    assert "Matches the fixture's expected result" in browser.find_element(By.ID, "check").text
