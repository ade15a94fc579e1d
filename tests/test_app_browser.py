"""The whole app as a person uses it: headless Debian Chromium draws, films and
watches the output, with the built-in backend behind the server."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import numpy as np
import pytest
from playwright.sync_api import Browser, Page

from fal_stream import frames
from fal_stream.config import Settings

from .app_server import RunningApp, serve_app
from .browser_support import (
    chromium,
    draw_stroke,
    img_src_changes,
    require_chromium,
    screenshot,
    wait_until,
    watch_img_src,
    write_y4m,
)

pytestmark = pytest.mark.browser

CANVAS = "#sketch canvas"
ZIGZAG = [(0.1 + 0.8 * i / 39, 0.3 + 0.4 * (i % 8) / 7) for i in range(40)]


@pytest.fixture(scope="module")
def running() -> Iterator[RunningApp]:
    require_chromium()
    with serve_app(Settings(backend="local")) as app:
        yield app


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    require_chromium()
    camera = write_y4m(tmp_path_factory.mktemp("camera") / "bars.y4m")
    with chromium(camera) as launched:
        yield launched


def open_page(browser: Browser, running: RunningApp) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(running.url + "/")
    page.wait_for_selector(CANVAS, state="visible", timeout=30_000)
    # The output stream starts with the page; wait for its first status line.
    wait_until(page, lambda: "waiting" in status(page), 30, "the status line")
    watch_img_src(page, "#output")
    return page


def status(page: Page) -> str:
    return page.locator("#status textarea").input_value()


def output_pixels(page: Page) -> np.ndarray:
    src = page.locator("#output img").get_attribute("src") or ""
    assert src.startswith("data:image/"), src[:40]
    return frames.to_array(base64.b64decode(src.split(",", 1)[1]))


def test_browser_output_follows_the_pen_during_a_stroke(
    browser: Browser, running: RunningApp
) -> None:
    """While the pen is still down, the output image changes several times."""
    page = open_page(browser, running)
    draw_stroke(page, CANVAS, ZIGZAG, duration_ms=2500, release=False)
    during = len(img_src_changes(page, "#output"))
    screenshot(page, "app_sketch_mid_stroke")
    page.mouse.up()
    assert during >= 3, f"only {during} outputs during a 2.5 s stroke"
    wait_until(page, lambda: "results" in status(page), 10, "a status with results")
    page.context.close()


def test_browser_webcam_streams_into_the_output(
    browser: Browser, running: RunningApp
) -> None:
    """The fake webcam's colour bars stream and outputs keep arriving."""
    page = open_page(browser, running)
    page.get_by_role("tab", name="Webcam").click()
    page.get_by_role("button", name="Click to Access Webcam").click()
    page.locator("#webcam [title='start recording']").click()
    wait_until(page, lambda: len(img_src_changes(page, "#output")) >= 3, 20, "outputs")
    first = len(img_src_changes(page, "#output"))
    # Outputs keep coming: three more, with room for a loaded machine.
    wait_until(
        page,
        lambda: len(img_src_changes(page, "#output")) >= first + 3,
        15,
        "more outputs while the camera streams",
    )
    # Unmirrored bars: the camera's left edge is white, so the output's is light.
    pixels = output_pixels(page)
    assert pixels[:, :20].mean() > pixels[:, -20:].mean()
    screenshot(page, "app_webcam_streaming")
    page.context.close()


def test_browser_two_people_see_only_their_own_results(
    browser: Browser, running: RunningApp
) -> None:
    """Two browser contexts drawing in red and in blue each see only their colour."""
    pages = {}
    for colour in ("Red", "Blue"):
        page = open_page(browser, running)
        page.get_by_role("button", name=colour).click()
        page.locator(".fs-size").fill("48")
        pages[colour] = page
    for _ in range(2):
        for page in pages.values():
            draw_stroke(page, CANVAS, [(0.2, 0.5), (0.8, 0.5), (0.2, 0.6)], steps=8)
    for colour, page in pages.items():
        wait_until(page, lambda p=page: img_src_changes(p, "#output"), 15, "output")
        page.wait_for_timeout(500)
        ink = output_pixels(page)[200:320, 100:420].reshape(-1, 3).astype(int)
        dark = ink[ink.sum(axis=1) < 600]  # the stroke, not the paper
        red, _, blue = dark.mean(axis=0)
        assert (red > blue) if colour == "Red" else (blue > red), (colour, red, blue)
        screenshot(page, f"app_isolation_{colour.lower()}")
    for page in pages.values():
        page.context.close()


def test_browser_example_and_prompt_change_update_output(
    browser: Browser, running: RunningApp
) -> None:
    """An example fills the sketch and prompt; editing the prompt re-renders
    without a new stroke."""
    page = open_page(browser, running)
    page.get_by_role("button", name="Example: house").click()
    wait_until(page, lambda: img_src_changes(page, "#output"), 15, "example output")
    before = len(img_src_changes(page, "#output"))
    page.locator("#prompt textarea").fill("a red barn at night, oil painting")
    wait_until(
        page,
        lambda: len(img_src_changes(page, "#output")) > before,
        15,
        "output after a prompt change",
    )
    page.wait_for_timeout(800)
    screenshot(page, "app_example_house")
    page.context.close()
