"""The manifest of a preprocessing output folder: its settings, inputs, per-day counts and finished outputs.

It makes reruns safe: a folder started with other settings or inputs is refused, a folder
holding files we did not make is never written into, and finished outputs are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dlrm_nb import __version__
from dlrm_nb.exceptions import ForeignOutputError, SettingsMismatchError
from dlrm_nb.fileio import write_json

MANIFEST_NAME = "dlrm_nb_manifest.json"
WORK_DIR_NAME = ".dlrm_nb_work"
MANIFEST_FORMAT = 1


def new_manifest(settings: dict[str, Any], inputs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "tool": "dlrm_nb",
        "format": MANIFEST_FORMAT,
        "version": __version__,
        "settings": settings,
        "inputs": inputs,
        "days": {},
        "outputs": [],
        "complete": False,
    }


def open_output_folder(
    out_dir: Path, settings: dict[str, Any], inputs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Create or reopen ``out_dir`` for a run with ``settings`` and ``inputs``; return its manifest.

    Refuses a folder that holds files but no manifest of ours, and a folder whose manifest
    records different settings or inputs.
    """
    path = out_dir / MANIFEST_NAME
    if path.exists():
        manifest = json.loads(path.read_text())
        _check_same_run(path, manifest, settings, inputs)
        return manifest
    out_dir.mkdir(parents=True, exist_ok=True)
    foreign = sorted(entry.name for entry in out_dir.iterdir())
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ForeignOutputError(
            f"output folder {out_dir} already holds files not made by dlrm-nb ({shown}); "
            "choose an empty or new folder so they are not overwritten"
        )
    manifest = new_manifest(settings, inputs)
    write_json(path, manifest)
    return manifest


def _check_same_run(path: Path, manifest: dict[str, Any], settings: dict[str, Any], inputs: list) -> None:
    if manifest.get("tool") != "dlrm_nb":
        raise ForeignOutputError(f"{path} is not a dlrm-nb manifest; choose another output folder")
    old = manifest.get("settings", {})
    changed = [
        f"{key}: {old.get(key)!r} -> {settings.get(key)!r}"
        for key in sorted(set(old) | set(settings))
        if old.get(key) != settings.get(key)
    ]
    if manifest.get("inputs") != inputs:
        changed.append("input files (names or sizes) differ from those recorded")
    if changed:
        raise SettingsMismatchError(
            f"{path.parent} was prepared with other settings ({'; '.join(changed)}); outputs of "
            "different settings are never mixed: use a new output folder, or delete this one to redo it"
        )


def save_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    write_json(out_dir / MANIFEST_NAME, manifest)


def input_record(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    return {"name": path.name, "bytes": path.stat().st_size}
