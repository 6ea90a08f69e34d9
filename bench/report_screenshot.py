"""Screenshot of a run's report in headless Chromium (Debian's ``chromium`` package).

    python bench/report_screenshot.py RESULTS/RUN_ID [OUT.png] [--width 1280] [--height 2400]

Renders ``RUN_ID/report.html`` with ``chromium --headless --no-sandbox --screenshot`` and prints
how many distinct colours the picture has (plots bring hundreds; text alone a few greys).
The README's picture, ``docs/report.png``, is made with it from a ``make demo`` run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from matplotlib.image import imread

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chromium import screenshot

from dlrm_nb.workbook.runs import REPORT_NAME


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", help="a run folder holding report.html")
    parser.add_argument("out", nargs="?", default=None, help="PNG to write (default RUN_DIR/report.png)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=2400)
    args = parser.parse_args()
    out = Path(args.out or Path(args.run_dir) / "report.png")
    png = screenshot(Path(args.run_dir) / REPORT_NAME, out, width=args.width, height=args.height)
    pixels = imread(png)
    colours = len(np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    print(f"wrote {png}: {pixels.shape[1]}x{pixels.shape[0]} pixels, {colours} distinct colours")


if __name__ == "__main__":
    main()
