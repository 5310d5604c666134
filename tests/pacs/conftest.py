from collections.abc import Iterator

import pytest

from pacs.models import DicomNode
from pacs.receiver import Receiver
from tests.pacs.orthanc import free_port


@pytest.fixture
def router_receiver(settings, team_a) -> Iterator[int]:
    """The C-STORE receiver on a free port (which it yields), with CT-ROUTER allowed from loopback
    for team A."""
    settings.DICOM_PORT = free_port()
    DicomNode.objects.create(team=team_a, ae_title="CT-ROUTER", addresses="127.0.0.0/8")
    server = Receiver().serve(block=False)
    yield settings.DICOM_PORT
    server.shutdown()
