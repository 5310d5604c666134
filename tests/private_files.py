"""What "private to the portal" means on disk: readable by its own user and nobody else."""

from __future__ import annotations

import stat
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def modes_under(root: Path) -> dict[str, str]:
    """Every folder and file from `root` down (root included), as {relative path: octal mode}."""
    paths = [root, *sorted(root.rglob("*"))]
    return {str(path.relative_to(root)): oct(stat.S_IMODE(path.stat().st_mode)) for path in paths}


def assert_private_tree(root: Path) -> None:
    """Files 0600 and folders 0700 from `root` down, and at least one file among them."""
    root = Path(root)
    files = [path for path in root.rglob("*") if path.is_file()]
    assert files, f"nothing stored under {root}"
    wrong = {
        name: mode
        for name, mode in modes_under(root).items()
        if mode != oct(FOLDER_MODE if (root / name).is_dir() else FILE_MODE)
    }
    assert not wrong, f"not private (files {oct(FILE_MODE)}, folders {oct(FOLDER_MODE)}): {wrong}"
