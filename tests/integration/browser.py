"""A headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) for UI tests,
writing a screenshot of every step under test-artifacts/screenshots/ (git-ignored).

Chromium is started with background networking off: this machine's network is closed, and
its update and sync requests would only add noise and delay.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]


def missing_browser() -> str | None:
    """Why the browser cannot start here, or None (`make test` installs both packages)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing: install Debian's chromium and chromium-driver (make browser)"
    return None


class Browser:
    """One Chromium window; ``shot(name)`` saves numbered screenshots into ``folder``."""

    def __init__(self, folder: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [*FLAGS, f"--user-data-dir={self.profile}"]:
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.folder = SCREENSHOTS / folder
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.count = 0

    def shot(self, name: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}.png"
        self.driver.save_screenshot(str(path))
        return path

    def open(self, url: str) -> None:
        self.driver.get(url)

    def find(self, by: str, value: str, timeout: float = 30) -> Any:
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout).until(
            expected_conditions.element_to_be_clickable((by, value)),
            message=f"no clickable element {by}={value!r} on {self.driver.current_url}",
        )

    def type_into(self, element: Any, text: str) -> None:
        """Type ``text`` into an input as a user does, key by key (the React form re-renders on
        its first keystroke, and a burst of keys can lose one), and check what it holds."""
        from selenium.webdriver.common.keys import Keys

        for _ in range(3):
            element.click()
            element.send_keys(Keys.CONTROL, "a")
            element.send_keys(Keys.DELETE)
            for char in text:
                element.send_keys(char)
                time.sleep(0.01)
            if element.get_attribute("value") == text:
                return
        raise AssertionError(f"the input holds {element.get_attribute('value')!r}, not {text!r}")

    def wait_for_text(self, text: str, timeout: float = 60, reload_every: float | None = None) -> None:
        """Wait until ``text`` is in the page's visible text (reloading every few seconds if asked)."""
        deadline = time.monotonic() + timeout
        last_reload = time.monotonic()
        while text.lower() not in self.visible_text().lower():
            if time.monotonic() > deadline:
                self.shot(f"missing {text[:40]}")
                raise AssertionError(f"{text!r} never appeared on {self.driver.current_url}")
            if reload_every is not None and time.monotonic() - last_reload > reload_every:
                self.driver.refresh()
                last_reload = time.monotonic()
            time.sleep(0.5)

    def visible_text(self) -> str:
        return str(self.driver.execute_script("return document.body ? document.body.innerText : ''"))

    def quit(self) -> None:
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)
