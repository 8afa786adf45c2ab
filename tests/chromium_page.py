"""Headless Debian chromium driven by selenium, for tests that check a report renders in a real browser."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser")
CHROMEDRIVER = ("chromedriver", "chromium-driver")
WIDTH = 1400
"""The window's width in CSS pixels: a laptop's browser, where the report must not overflow sideways."""
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
    f"--window-size={WIDTH},2000",
)
OVERFLOW = """
const width = document.documentElement.clientWidth;
const wide = [];
for (const element of document.querySelectorAll('body *')) {
  const box = element.getBoundingClientRect();
  if ((box.width > 0 || box.height > 0) && (box.right > width + 0.5 || box.left < -0.5)) {
    wide.push(`${element.tagName.toLowerCase()}.${element.className} ${Math.round(box.left)}-${Math.round(box.right)}`);
  }
}
const scrolled = Array.from(document.querySelectorAll('body *'))
  .filter(element => element.scrollWidth > element.clientWidth + 1 && element.clientWidth > 0
          && ['auto', 'scroll'].includes(getComputedStyle(element).overflowX))
  .map(element => `${element.tagName.toLowerCase()}.${element.className} ${element.scrollWidth}>`
                  + `${element.clientWidth}`);
return {scrollWidth: document.documentElement.scrollWidth, clientWidth: width, wide: wide, scrolled: scrolled};
"""


PROTOCOLS = """
return Array.from(document.images).filter(image => image.alt.startsWith('Sensitivity-n curves')).map(image => {
  const next = image.closest('figure').nextElementSibling;
  const box = next ? next.getBoundingClientRect() : null;
  return {alt: image.alt, protocol: next && next.classList.contains('protocol') ? next.textContent.trim() : null,
          visible: !!box && box.width > 0 && box.height > 0};
});
"""
"""Each Sensitivity-n figure, the protocol line right under it (None when absent) and whether it is drawn."""


def _which(names: tuple[str, ...]) -> str | None:
    return next((path for name in names if (path := shutil.which(name))), None)


def missing_reason() -> str | None:
    """Why a browser test cannot run here, or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if _which(CHROMIUM) is None or _which(CHROMEDRIVER) is None:
        return "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    return None


@contextmanager
def chromium() -> Iterator[object]:
    """A selenium WebDriver on headless chromium with a fresh profile and browser logs captured."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="gradattr-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = _which(CHROMIUM) or ""
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(executable_path=_which(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()


def page_facts(driver: object, page: Path, screenshot: Path) -> dict[str, object]:
    """Open ``page``, save a full-height screenshot, and return what the test asserts on: the headings,
    each image's natural size and whether it loaded (``images``), its displayed width and the start of its ``src``
    (``shown``), the browser console's errors, and what is wider than the window (``overflow``: the page's scroll
    and client widths, every element that reaches past the window's edge, and every box whose content the reader
    must scroll sideways), the protocol line under each Sensitivity-n figure (``protocols``, see
    :data:`PROTOCOLS`) and the items of the differences from the paper (``differences``)."""
    driver.get(page.resolve().as_uri())
    driver.execute_script("return document.readyState")  # type: ignore[attr-defined]
    height = driver.execute_script("return document.documentElement.scrollHeight")  # type: ignore[attr-defined]
    driver.set_window_size(WIDTH, min(int(height), 16000))  # type: ignore[attr-defined]
    driver.save_screenshot(str(screenshot))  # type: ignore[attr-defined]
    headings = driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.querySelectorAll('h1,h2,h3')).map(h => h.textContent.trim())"
    )
    images = driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt])"
    )
    shown = driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.images).map(i => [i.getBoundingClientRect().width, i.src.slice(0, 20)])"
    )
    errors = [
        entry["message"]
        for entry in driver.get_log("browser")  # type: ignore[attr-defined]
        if entry.get("level") in ("SEVERE", "ERROR")
    ]
    spans = driver.execute_script("return document.querySelectorAll('span.tok').length")  # type: ignore[attr-defined]
    overflow = driver.execute_script(OVERFLOW)  # type: ignore[attr-defined]
    protocols = driver.execute_script(PROTOCOLS)  # type: ignore[attr-defined]
    differences = driver.execute_script(  # type: ignore[attr-defined]
        "return Array.from(document.querySelectorAll('ul.differences li')).map(li => li.textContent.trim())"
    )
    return {"headings": headings, "images": images, "shown": shown, "errors": errors, "token_spans": spans,
            "overflow": overflow, "protocols": protocols, "differences": differences}  # fmt: skip


def element_screenshots(driver: object, selector: str, directory: Path) -> list[Path]:
    """Save a screenshot of each element matching the CSS ``selector`` (at the window's width) into
    ``directory`` as ``<n>.png``; return their paths."""
    from selenium.webdriver.common.by import By

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, element in enumerate(driver.find_elements(By.CSS_SELECTOR, selector)):  # type: ignore[attr-defined]
        path = directory / f"{i}.png"
        element.screenshot(str(path))
        paths.append(path)
    return paths
