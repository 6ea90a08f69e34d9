"""Screenshots of pages in headless Chromium (Debian's ``chromium``), for the tests and bench/."""

from __future__ import annotations

import os
from pathlib import Path

#: Headless Chromium flags for a machine without a screen, a GPU or network access.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The path of a Chromium (Debian's ``chromium`` package) or Chrome binary, if installed."""
    import shutil

    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def screenshot(
    page: str | os.PathLike,
    png: str | os.PathLike,
    *,
    width: int = 1280,
    height: int = 2400,
    timeout_s: float = 120,
) -> Path:
    """Render ``page`` (an HTML file) in headless Chromium and save the top ``width`` x ``height``
    pixels as ``png``."""
    import subprocess

    from dlrm_nb.exceptions import DlrmNbError

    chromium = find_chromium()
    if chromium is None:
        raise DlrmNbError(
            f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)}): apt-get install chromium"
        )
    png = Path(png).resolve()
    tmp = png.with_name(f".{png.stem}.partial-{os.getpid()}.png")  # Chromium picks the format by suffix
    try:
        done = subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--window-size={width},{height}",
                f"--screenshot={tmp}",
                Path(page).resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0 or not tmp.exists():
            raise DlrmNbError(f"Chromium could not render {page}: {done.stderr.strip()[-500:]}")
        os.replace(tmp, png)
    finally:
        tmp.unlink(missing_ok=True)
    return png
