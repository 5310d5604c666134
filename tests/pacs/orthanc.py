"""A real Orthanc PACS for the tests: Debian's `orthanc` and `orthanc-dicomweb`, started on free
ports in a temporary folder and stopped afterwards.

Use the `orthanc` fixture (one server for the test session; every test makes its own study UIDs,
so they do not see each other's instances), or `orthanc_server(folder, ...)` for a server of your
own. Point Orthanc at the portal with `Orthanc.modality_put` (our C-STORE receiver) and
`Orthanc.dicomweb_server_put` (our STOW-RS endpoint), or at start with `modalities` and
`dicomweb_servers`; then push a study with `Orthanc.push_to_modality` / `Orthanc.push_to_dicomweb`.

Tests skip, saying why, where Orthanc or its DICOMweb plugin is not installed
(`apt-get install -y orthanc orthanc-dicomweb`).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AET = "ORTHANC"
START_TIMEOUT = 20.0  # seconds; it answers in ~0.15 s here
STOP_TIMEOUT = 15.0  # it exits ~4 s after SIGTERM


def orthanc_missing() -> str | None:
    """Why Orthanc cannot run here, or None."""
    if not Path(ORTHANC).exists():
        return "Orthanc is not installed (apt-get install -y orthanc orthanc-dicomweb)"
    if not DICOMWEB_PLUGIN.exists():
        return f"Orthanc's DICOMweb plugin is not at {DICOMWEB_PLUGIN} (apt-get install -y orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Modality:
    """A DICOM node Orthanc may send to (C-STORE) or accept from."""

    aet: str
    host: str
    port: int

    def config(self) -> dict[str, Any]:
        return {"AET": self.aet, "Host": self.host, "Port": self.port}


@dataclass(frozen=True)
class DicomWebServer:
    """A DICOMweb server Orthanc may push to (STOW-RS to `{url}studies`)."""

    url: str  # ends with "/"
    headers: Mapping[str, str] | None = None

    def config(self) -> dict[str, Any]:
        # Orthanc's default chunked STOW bodies carry no Content-Length (ORTHANC.md pitfall 1).
        config: dict[str, Any] = {"Url": self.url, "ChunkedTransfers": False}
        if self.headers:
            config["HttpHeaders"] = dict(self.headers)
        return config


@dataclass
class Orthanc:
    process: subprocess.Popen[bytes]
    folder: Path
    http_port: int
    dicom_port: int
    aet: str = AET

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Its DICOMweb root, as PACS_STOW_URL takes it."""
        return f"{self.http_url}/dicom-web/"

    @property
    def cstore(self) -> str:
        """Its C-STORE address, as PACS_CSTORE takes it."""
        return f"{self.aet}@127.0.0.1:{self.dicom_port}"

    @property
    def log_path(self) -> Path:
        return self.folder / "orthanc.log"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    # --- its REST API -----------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.request(method, f"{self.http_url}/{path.lstrip('/')}", **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def ok(self, response: requests.Response) -> Any:
        """The JSON of a successful answer; otherwise fails the test with Orthanc's log."""
        if not response.ok:
            pytest.fail(
                f"Orthanc answered {response.status_code} to {response.request.method} {response.url}: "
                f"{response.text[:1000]}\n--- Orthanc log ---\n{self.log_tail()}"
            )
        return response.json() if response.content else None

    def modality_put(self, name: str, *, aet: str, host: str = "127.0.0.1", port: int) -> None:
        """Let Orthanc send to (and accept from) a DICOM node, e.g. the portal's C-STORE receiver."""
        self.ok(self.put(f"modalities/{name}", json=Modality(aet, host, port).config()))

    def dicomweb_server_put(self, name: str, *, url: str, headers: Mapping[str, str] | None = None) -> None:
        """Let Orthanc push to a DICOMweb server, e.g. the portal's STOW-RS endpoint."""
        self.ok(self.put(f"dicom-web/servers/{name}", json=DicomWebServer(url, headers).config()))

    def upload(self, data: bytes) -> dict[str, Any]:
        """Store one DICOM file (as a modality would); Orthanc's answer with its resource IDs."""
        answer: dict[str, Any] = self.ok(
            self.post("instances", data=data, headers={"Content-Type": "application/dicom"})
        )
        return answer

    def study_id(self, study_instance_uid: str) -> str | None:
        """Orthanc's own ID of a study, or None where it does not hold it."""
        found = self.ok(self.post("tools/lookup", data=study_instance_uid))
        return next((item["ID"] for item in found if item["Type"] == "Study"), None)

    def push_to_modality(self, name: str, resources: list[str]) -> Any:
        """C-STORE studies/series/instances (Orthanc IDs) to a configured modality, synchronously."""
        return self.ok(
            self.post(f"modalities/{name}/store", json={"Resources": resources, "Synchronous": True})
        )

    def push_to_dicomweb(self, name: str, resources: list[str]) -> Any:
        """STOW-RS studies/series/instances (Orthanc IDs) to a configured DICOMweb server."""
        return self.ok(
            self.post(f"dicom-web/servers/{name}/stow", json={"Resources": resources, "Synchronous": True})
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _config(
    folder: Path,
    http_port: int,
    dicom_port: int,
    modalities: Mapping[str, Modality],
    dicomweb_servers: Mapping[str, DicomWebServer],
) -> dict[str, Any]:
    storage = str(folder / "storage")
    return {
        "Name": "lungportal-test-pacs",
        "StorageDirectory": storage,
        "IndexDirectory": storage,
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": AET,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": False,
        "DicomModalitiesInDatabase": False,
        "DicomWebServersInDatabase": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomModalities": {name: modality.config() for name, modality in modalities.items()},
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "Servers": {name: server.config() for name, server in dicomweb_servers.items()},
        },
    }


@contextmanager
def orthanc_server(
    folder: Path,
    *,
    modalities: Mapping[str, Modality] | None = None,
    dicomweb_servers: Mapping[str, DicomWebServer] | None = None,
) -> Iterator[Orthanc]:
    """Run Orthanc in `folder` until the block ends (skips the test where it is not installed)."""
    missing = orthanc_missing()
    if missing:
        pytest.skip(missing)
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = folder / "orthanc.json"
    config.write_text(
        json.dumps(_config(folder, http_port, dicom_port, modalities or {}, dicomweb_servers or {}))
    )
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen([ORTHANC, "--verbose", str(config)], stdout=log, stderr=subprocess.STDOUT)
    server = Orthanc(process=process, folder=folder, http_port=http_port, dicom_port=dicom_port)
    try:
        _wait_until_up(server)
        yield server
    finally:
        server.stop()
        log.close()


def _wait_until_up(server: Orthanc) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"Orthanc exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if server.get("system", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    pytest.fail(f"Orthanc did not answer /system within {START_TIMEOUT} s:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """One Orthanc for the session. Tests use their own study UIDs; where one points Orthanc at the
    portal it names its own modality or DICOMweb server."""
    with orthanc_server(tmp_path_factory.mktemp("orthanc")) as server:
        yield server
