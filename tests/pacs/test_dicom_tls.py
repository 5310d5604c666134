"""DICOM TLS on the C-STORE receiver: a throwaway PKI made with the openssl command, pynetdicom as
the sender. Each sender presents its own certificate (pinned in its record, or issued by the CA its
record names); no certificate, an untrusted one or another sender's is refused."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from datetime import date
from io import BytesIO
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from cases.models import Scan
from pacs import receiver as receiver_module
from pacs.models import DicomNode, UnmatchedSeries, validate_certificates
from pacs.receiver import Receiver
from tests.conftest import wait_for
from tests.pacs.orthanc import free_port
from tests.pacs.series import ct_series, dataset_slices

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]

OPENSSL_CONFIG = """
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
subjectAltName = DNS:localhost, IP:127.0.0.1
extendedKeyUsage = serverAuth
[client]
basicConstraints = CA:FALSE
extendedKeyUsage = clientAuth
"""


@dataclass
class Identity:
    cert: Path
    key: Path

    @property
    def pem(self) -> str:
        return self.cert.read_text()


class PKI:
    """Keys and certificates in a folder, made with `openssl` (the cryptography package is not a
    dependency of the portal)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = folder / "openssl.cnf"
        self.config.write_text(OPENSSL_CONFIG)
        self.serial = 0

    def openssl(self, *args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    def key(self, name: str) -> Path:
        key = self.folder / f"{name}.key"
        self.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        return key

    def ca(self, name: str) -> Identity:
        key, cert = self.key(name), self.folder / f"{name}.pem"
        self.openssl(
            "req", "-x509", "-new", "-key", key, "-subj", f"/CN={name}", "-days", "2",
            "-config", self.config, "-extensions", "ca", "-out", cert,
        )  # fmt: skip
        return Identity(cert, key)

    def issue(self, name: str, issuer: Identity, kind: str) -> Identity:
        key, csr, cert = self.key(name), self.folder / f"{name}.csr", self.folder / f"{name}.pem"
        self.openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-config", self.config, "-out", csr)
        self.serial += 1
        self.openssl(
            "x509", "-req", "-in", csr, "-CA", issuer.cert, "-CAkey", issuer.key,
            "-set_serial", str(self.serial), "-days", "2", "-extfile", self.config, "-extensions", kind,
            "-out", cert,
        )  # fmt: skip
        return Identity(cert, key)


@dataclass
class Certificates:
    hospital: Identity  # the CA of the receiver and of two senders
    server: Identity  # the receiver's
    router: Identity  # CT-ROUTER's
    pacs_b: Identity  # PACS-B's
    stranger: Identity  # a client of a CA nobody trusts


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Certificates:
    made = PKI(tmp_path_factory.mktemp("pki"))
    hospital = made.ca("Hospital CA")
    return Certificates(
        hospital=hospital,
        server=made.issue("localhost", hospital, "server"),
        router=made.issue("ct-router", hospital, "client"),
        pacs_b=made.issue("pacs-b", hospital, "client"),
        stranger=made.issue("stranger", made.ca("Stranger CA"), "client"),
    )


@pytest.fixture
def known(patient):
    patient.mrn, patient.birth_date, patient.name = "P-1", date(1961, 3, 14), "Jane Roe"
    patient.save()
    return patient


@pytest.fixture
def tls_receiver(settings, pki):
    settings.DICOM_PORT = free_port()
    settings.DICOM_TLS_CERT, settings.DICOM_TLS_KEY = str(pki.server.cert), str(pki.server.key)
    server = Receiver().serve(block=False)
    yield settings.DICOM_PORT
    server.shutdown()


def associate(
    port: int, pki: Certificates, identity: Identity | None, calling: str = "CT-ROUTER"
) -> Association:
    context = ssl.create_default_context(cafile=pki.hospital.cert)  # the receiver's CA
    if identity is not None:
        context.load_cert_chain(identity.cert, identity.key)
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = ae.network_timeout = 10
    return ae.associate("127.0.0.1", port, ae_title="LUNGPORTAL", tls_args=(context, "localhost"))


def one_instance() -> Dataset:
    return dcmread(BytesIO(ct_series(dataset_slices(1))[0][1]))


@pytest.mark.parametrize("trusted", ["its certificate", "its CA"])
def test_a_tls_sender_presenting_its_certificate_is_accepted_and_stores(
    tls_receiver, pki, known, team_a, trusted
):
    pem = pki.router.pem if trusted == "its certificate" else pki.hospital.pem
    DicomNode.objects.create(team=team_a, ae_title="CT-ROUTER", addresses="127.0.0.1", tls_certificate=pem)
    assoc = associate(tls_receiver, pki, pki.router)
    assert assoc.is_established
    status = assoc.send_c_store(one_instance())
    assoc.release()
    assert status.Status == 0x0000
    wait_for(lambda: Scan.objects.exists(), timeout=60, message="the scan stored")
    assert Scan.objects.get().patient == known


def test_a_tls_sender_without_its_certificate_is_refused(tls_receiver, pki, known, team_a, team_b):
    DicomNode.objects.create(
        team=team_a, ae_title="CT-ROUTER", addresses="127.0.0.1", tls_certificate=pki.router.pem
    )
    DicomNode.objects.create(
        team=team_b, ae_title="PACS-B", addresses="127.0.0.1", tls_certificate=pki.pacs_b.pem
    )
    for identity in (None, pki.stranger):  # no client certificate; one from a CA nobody trusts
        refused = associate(tls_receiver, pki, identity)
        assert not refused.is_established, identity
    # A certificate the receiver trusts, but PACS-B's: the handshake passes, the association does not.
    assert associate(tls_receiver, pki, pki.pacs_b).is_rejected
    plain = AE(ae_title="CT-ROUTER")
    plain.add_requested_context(CTImageStorage)
    plain.acse_timeout = plain.network_timeout = 10
    assert not plain.associate("127.0.0.1", tls_receiver, ae_title="LUNGPORTAL").is_established  # no TLS
    assoc = associate(tls_receiver, pki, pki.router)  # and the receiver still serves its senders
    assert assoc.is_established
    assoc.release()
    assert not Scan.objects.exists() and not UnmatchedSeries.objects.exists()


def test_a_tls_sender_at_another_address_is_refused(tls_receiver, pki, team_a):
    DicomNode.objects.create(
        team=team_a, ae_title="CT-ROUTER", addresses="10.9.9.9", tls_certificate=pki.router.pem
    )
    assoc = associate(tls_receiver, pki, pki.router)
    assert not assoc.is_established  # dropped before the handshake: nobody is allowed from there


def test_a_stranger_is_dropped_before_the_tls_handshake(tls_receiver, pki, team_a):
    DicomNode.objects.create(
        team=team_a, ae_title="CT-ROUTER", addresses="10.9.9.9", tls_certificate=pki.router.pem
    )
    with socket.create_connection(("127.0.0.1", tls_receiver)) as stranger:  # says nothing
        stranger.settimeout(5)
        started = time.monotonic()
        assert stranger.recv(1) == b""  # closed by the receiver at once, not after the time limit
        assert time.monotonic() - started < receiver_module.TLS_HANDSHAKE_SECONDS / 2


def test_a_silent_connection_does_not_hold_up_the_senders(tls_receiver, pki, team_a, monkeypatch):
    monkeypatch.setattr(receiver_module, "TLS_HANDSHAKE_SECONDS", 1.0)
    DicomNode.objects.create(
        team=team_a, ae_title="CT-ROUTER", addresses="127.0.0.1", tls_certificate=pki.router.pem
    )
    with socket.create_connection(("127.0.0.1", tls_receiver)):  # connects, never says hello
        started = time.monotonic()
        assoc = associate(tls_receiver, pki, pki.router)
        assert assoc.is_established and time.monotonic() - started < 8
        assoc.release()


def test_a_sender_certificate_must_be_pem(pki):
    validate_certificates(pki.router.pem + pki.hospital.pem)  # several: a rollover, or a chain
    for wrong in ("not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"):
        with pytest.raises(ValidationError):
            validate_certificates(wrong)
