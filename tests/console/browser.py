"""Steps of the console's browser tests, over the DevTools helpers of ``tests/media/chromium.py``."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import av
import numpy as np

from tests.media.chromium import Page


async def loaded(page: Page, action: str) -> None:
    """Run ``action`` in the page (a click or a submit) and wait for the page it leads to."""
    done = asyncio.create_task(page.browser.wait_event("Page.loadEventFired", page.session_id))
    try:
        await page.evaluate(action)
        async with asyncio.timeout(15):
            await done
    finally:
        done.cancel()


async def go(page: Page, url: str) -> None:
    await loaded(page, f"location.href = {json.dumps(url)}")


async def fill(page: Page, values: dict[str, str]) -> None:
    for name, value in values.items():
        await page.evaluate(f"document.querySelector('[name=\"{name}\"]').value = {json.dumps(value)}")


async def shot(page: Page, folder: Path, name: str, width: int = 1200) -> Path:
    """A full-page PNG at ``width`` CSS pixels, checked to show something (not one flat colour)."""
    await page.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600},
    )
    height = await page.evaluate("Math.ceil(document.documentElement.scrollHeight)")
    shot = await page.send(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    path = folder / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    with av.open(str(path)) as png:
        picture = next(png.decode(video=0)).to_ndarray(format="rgb24")
    assert picture.shape[1] == width and picture.shape[0] >= 200, picture.shape
    assert np.unique(picture.reshape(-1, 3), axis=0).shape[0] > 20, f"{name}: the page looks blank"
    # Nothing wider than the screen: readable at phone width without scrolling sideways.
    assert await page.evaluate("document.documentElement.scrollWidth") <= width + 1, f"{name}: wider than {width}"
    return path


async def text(page: Page) -> str:
    return str(await page.evaluate("document.body.innerText"))


async def sign_in(page: Page, base: str, user: str, password: str) -> None:
    """Sign in through the sign-in form; the page ends on the applications."""
    await go(page, f"{base}/console")
    await fill(page, {"user": user, "password": password})
    await loaded(page, "document.querySelector('form[action=\"/console/sign-in\"]').requestSubmit()")
    assert await page.evaluate("location.pathname") == "/console/apps"


_KEYS = {"Tab": 9, "Enter": 13}


async def press(page: Page, key: str) -> None:
    """Press and release a key (``Tab``, ``Enter``) as a keyboard would."""
    code = _KEYS[key]
    down = {"type": "keyDown", "key": key, "code": key, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
    if key == "Enter":
        down["text"] = "\r"
    await page.send("Input.dispatchKeyEvent", down)
    await page.send("Input.dispatchKeyEvent", {**down, "type": "keyUp", "text": ""})


async def type_text(page: Page, text: str) -> None:
    """Type into the focused field."""
    await page.send("Input.insertText", {"text": text})
