"""The C-STORE receiver's inbox: every instance answered Success is on disk before its answer, in a
private folder per association (under the data directory, not media) beside the record of who sent
it. A folder goes once its instances are stored; one left behind by a crash, a restart or a failed
store is delivered again when the receiver starts. What a sender was told is stored is not lost."""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

SENDER = "sender.json"


def root() -> Path:
    return Path(settings.DICOM_INBOX_DIR)


@dataclass(frozen=True)
class InboxFolder:
    path: Path

    @classmethod
    def create(cls, *, node_id: int, ae_title: str) -> InboxFolder:
        root().mkdir(mode=0o700, parents=True, exist_ok=True)
        path = root() / uuid.uuid4().hex
        path.mkdir(mode=0o700)
        (path / SENDER).write_text(json.dumps({"node": node_id, "ae_title": ae_title}))
        return cls(path)

    def add(self, number: int, received: Path) -> Path:
        """A copy of a received file (pynetdicom's, removed when its handler returns)."""
        target = self.path / f"{number:05d}.dcm"
        shutil.copyfile(received, target)
        target.chmod(0o600)
        return target

    def sender(self) -> tuple[int, str]:
        record = json.loads((self.path / SENDER).read_text())
        return int(record["node"]), str(record["ae_title"])

    def files(self) -> list[tuple[str, Path]]:
        return [(f"instance {int(path.stem)}", path) for path in sorted(self.path.glob("*.dcm"))]

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def leftovers() -> list[InboxFolder]:
    """Folders of associations whose instances were answered but not (all) stored."""
    if not root().is_dir():
        return []
    return [InboxFolder(path) for path in sorted(root().iterdir()) if (path / SENDER).is_file()]
