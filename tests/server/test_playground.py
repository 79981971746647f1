"""The Playground in a real headless Chromium (Debian's, driven by Playwright) against a
live `interp serve`, the scripted model and real kernels: what a person does in the page,
and what a hostile model or program cannot do to it. Screenshots of the main states go to
``test-output/playground/``."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from .conftest import KEY_A, Server, start_server
from .fake_model import FakeModel

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).parents[2] / "test-output" / "playground"
ASSETS = Path(__file__).parents[2] / "src" / "interp" / "server" / "playground"

pytestmark = [
    pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The Assistants API is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert os.path.exists(CHROMIUM), "scripts/setup installs Debian's chromium"
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Watched:
    """A page with what it logged: console errors, uncaught errors, dialogs."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

        def dialog(d: Any) -> None:
            self.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def page(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1200, "height": 900})
    watched = Watched(context.new_page())
    watched.page.set_default_timeout(30_000)
    yield watched
    context.close()


def root(server: Server) -> str:
    return server.url.removesuffix("/v1") + "/"


def make_assistant(page: Page, name: str, functions: list[dict[str, Any]] | None = None) -> None:
    page.get_by_role("button", name="New assistant").click()
    page.get_by_label("Name").fill(name)
    if functions:
        page.get_by_label("Functions").fill(json.dumps(functions))
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#assistants")).to_contain_text(name)


def send(page: Page, text: str) -> None:
    page.locator("#message").fill(text)
    page.get_by_role("button", name="Send").click()


def test_a_run_streams_its_code_logs_and_chart_into_the_page(server: Server, page: Watched) -> None:
    p = page.page
    p.goto(root(server))
    fcp = p.evaluate(
        "new Promise(done => new PerformanceObserver("
        "(list) => done(list.getEntries()[0].startTime)"
        ").observe({type: 'paint', buffered: true}))"
    )
    make_assistant(p, "Analyst")
    page.shot("assistant-made")
    code = (
        "RUN: import time\nimport matplotlib.pyplot as plt\nprint('plotted the line')\n"
        "plt.plot([1, 3, 2])\nplt.show()\ntime.sleep(2)\nprint('done')"
    )
    send(p, code)
    # While the run goes on (the Stop button is there): the code, its first log line and
    # the chart are already in the page.
    expect(p.locator(".call code").first).to_contain_text("plt.plot([1, 3, 2])")
    expect(p.locator(".call .logs").first).to_contain_text("plotted the line")
    expect(p.locator(".call img.output").first).to_be_visible()
    assert p.locator("#stop").is_visible()
    assert "done" not in p.locator(".call .logs").first.inner_text()
    page.shot("run-streaming")
    expect(p.locator("#status")).to_have_text("Run completed")
    expect(p.locator(".message.assistant").last).to_contain_text("Result:")
    # The address follows the thread: reloading it shows the conversation again.
    assert "thread=thread_" in p.url and "assistant=asst_" in p.url
    p.locator("#run-details summary").click()
    expect(p.locator("#run-info")).to_contain_text("tokens:")
    page.shot("run-completed")
    p.reload()
    expect(p.locator(".message.user")).to_contain_text("plotted the line")
    expect(p.locator(".message.assistant img.output").first).to_be_visible()
    # With its code and what the code printed, between the question and the answer.
    expect(p.locator(".call code").first).to_contain_text("plt.plot([1, 3, 2])")
    expect(p.locator(".call .logs").first).to_contain_text("plotted the line\ndone")
    kinds = p.locator(".conversation > *").evaluate_all("nodes => nodes.map(n => n.className)")
    assert kinds == ["message user", "call", "message assistant"], kinds
    assert page.errors == [] and page.dialogs == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "metrics.json").write_text(json.dumps({"first_contentful_paint_ms": fcp}))
    assert 0 < fcp < 300, fcp


def test_a_long_run_is_stopped(server: Server, page: Watched) -> None:
    p = page.page
    p.goto(root(server))
    make_assistant(p, "Sleeper")
    send(p, "RUN: import time\nprint('started')\ntime.sleep(60)")
    expect(p.locator(".call .logs").first).to_contain_text("started")
    p.get_by_role("button", name="Stop").click()
    expect(p.locator("#status")).to_have_text("Run cancelled", timeout=15_000)
    assert page.errors == []


def test_an_uploaded_csv_is_read_and_a_produced_file_downloaded(
    server: Server, page: Watched, tmp_path: Path
) -> None:
    p = page.page
    p.goto(root(server))
    make_assistant(p, "Files")
    data = tmp_path / "sales.csv"
    data.write_text("region,amount\nnorth,10\nsouth,32\n")
    p.locator("#attach").set_input_files(str(data))
    send(
        p,
        "RUN: import pandas as pd\ndf = pd.read_csv('/mnt/data/sales.csv')\n"
        "print('total', df.amount.sum())\ndf.to_csv('/mnt/data/doubled.csv')\n"
        "print('[the table](sandbox:/mnt/data/doubled.csv)')",
    )
    expect(p.locator(".call .logs").first).to_contain_text("total 42")
    expect(p.locator("#status")).to_have_text("Run completed")
    produced = p.locator("#produced li", has_text="doubled.csv")
    expect(produced).to_contain_text("B")  # its size
    with p.expect_download() as caught:
        produced.get_by_role("button").click()
    download = caught.value
    assert download.suggested_filename == "doubled.csv"
    assert "north,10" in Path(download.path()).read_text()
    # The answer's link to the file (a file_path annotation) downloads it too.
    link = p.locator(".message.assistant").last.get_by_role("button", name="the table")
    with p.expect_download() as caught:
        link.click()
    assert caught.value.suggested_filename == "doubled.csv"
    page.shot("files")
    assert page.errors == []


def test_a_function_call_is_answered_through_the_form(server: Server, page: Watched) -> None:
    p = page.page
    p.goto(root(server))
    weather = {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    make_assistant(p, "Weather", [weather])
    # By keyboard: the message box, then Ctrl+Enter sends it.
    p.locator("#message").focus()
    p.keyboard.type('CALL get_weather {"city": "Oslo"}')
    p.keyboard.press("Control+Enter")
    form = p.locator("#tool-form")
    expect(form).to_contain_text('get_weather({"city": "Oslo"})')
    page.shot("function-call")
    form.locator("textarea").fill("sunny, 4 degrees")
    form.get_by_role("button", name="Submit outputs").click()
    expect(p.locator(".message.assistant").last).to_contain_text("sunny, 4 degrees")
    expect(p.locator("#status")).to_have_text("Run completed")
    assert page.errors == []


def test_hostile_logs_names_and_text_stay_text(server: Server, page: Watched) -> None:
    p = page.page
    p.goto(root(server))
    make_assistant(p, "Target")
    hostile = "<img src=x onerror=alert(1)><script>alert(2)</script>"
    send(
        p,
        f"RUN: print({hostile!r})\nopen('/mnt/data/<img src=x onerror=alert(3)>.txt', 'w')"
        ".write('x')\nprint('[click](javascript:document.title=1)')",
    )
    expect(p.locator("#status")).to_have_text("Run completed")
    # Shown as it is, as text; nothing ran, no element was made of it.
    expect(p.locator(".call .logs").first).to_contain_text(hostile)
    expect(p.locator("#produced")).to_contain_text("<img src=x onerror=alert(3)>.txt")
    expect(p.locator(".message.assistant").last).to_contain_text("<script>alert(2)</script>")
    assert p.locator(".conversation img:not(.output), .conversation script").count() == 0
    assert p.locator('.conversation a[href^="javascript"]').count() == 0
    expect(p.locator(".message.assistant").last).to_contain_text("click")
    assert p.title() == "interp Playground"
    assert page.dialogs == [] and page.errors == []
    page.shot("hostile-output")


def test_the_page_and_its_assets_are_small_and_strict(server: Server, page: Watched) -> None:
    size = sum(f.stat().st_size for f in ASSETS.iterdir() if f.suffix in (".js", ".css"))
    assert size < 300 * 1024, size
    p = page.page
    response = p.goto(root(server))
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    # Phone width: the sidebar stacks above the conversation, nothing overflows.
    p.set_viewport_size({"width": 390, "height": 800})
    expect(p.locator("#app")).to_be_visible()
    assert p.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.shot("phone")
    assert page.errors == []


def test_with_keys_the_page_asks_for_one_then_works(
    fake_model: FakeModel, tmp_path: Path, browser: Any, docker_client: docker.DockerClient
) -> None:
    server = start_server(tmp_path, fake_model.url, "--api-key", KEY_A)
    try:
        context = browser.new_context()
        watched = Watched(context.new_page())
        p = watched.page
        p.goto(root(server))
        expect(p.locator("#key-form")).to_be_visible()
        expect(p.locator("#app")).to_be_hidden()
        p.get_by_label("API key").fill("wrong-key")
        p.get_by_role("button", name="Use key").click()
        expect(p.locator("#key-error")).to_contain_text("Incorrect API key")
        p.get_by_label("API key").fill(KEY_A)
        p.get_by_role("button", name="Use key").click()
        expect(p.locator("#app")).to_be_visible()
        make_assistant(p, "Keyed")
        send(p, "RUN: print(6 * 7)")
        expect(p.locator(".call .logs").first).to_contain_text("42")
        watched.shot("keyed")
        # The key lives in the tab's session only.
        assert p.evaluate("localStorage.getItem('interp.key')") is None
        assert watched.dialogs == []
        # Only the refused requests (401) were logged, by the browser itself.
        assert all("401" in error for error in watched.errors), watched.errors
        context.close()
    finally:
        server.stop()


def test_markdown_deep_links_edits_and_the_responses_switch(server: Server, page: Watched) -> None:
    p = page.page
    p.goto(root(server))
    make_assistant(p, "Writer")
    table = (
        "done\\n\\n| region | amount |\\n|---|---|\\n| north | 10 |"
        "\\n\\n```python\\nx = 1  # one\\n```"
    )
    send(p, f'RUN: print("{table}")')
    reply = p.locator(".message.assistant").last
    expect(reply.locator("table td").first).to_have_text("north")
    expect(reply.locator("pre .tok-comment")).to_have_text("# one")
    thread_url = p.url
    assistant_id = thread_url.split("assistant=")[1].split("&")[0]

    # A deep link to the assistant alone opens a new thread with it.
    p.goto(root(server) + f"?assistant={assistant_id}")
    expect(p.locator("#status")).to_contain_text("New thread with Writer")
    expect(p.locator("#threads")).to_contain_text("RUN: print")
    p.goto(thread_url)
    expect(reply.locator("table td").first).to_have_text("north")

    # Edited, then deleted.
    p.get_by_role("button", name="Edit Writer").click()
    p.get_by_label("Name").fill("Editor")
    p.get_by_role("button", name="Save").click()
    expect(p.locator("#assistants")).to_contain_text("Editor")
    p.get_by_role("button", name="Edit Editor").click()
    p.get_by_role("button", name="Delete").click()
    expect(p.locator("#assistants")).not_to_contain_text("Editor")

    # The Responses API: the same view, each message continuing the previous response.
    p.get_by_label("Responses API").check()
    send(p, "RUN: x = 20\nprint('first', x)")
    expect(p.locator(".call .logs").last).to_contain_text("first 20")
    expect(p.locator("#status")).to_have_text("Response completed")
    send(p, "RUN: print('second', x + 1)")  # the same container: x is still there
    expect(p.locator(".call .logs").last).to_contain_text("second 21")
    expect(p.locator("#run-info")).to_contain_text("response resp_")
    page.shot("responses")
    assert page.errors == [] and page.dialogs == []
