"""The clinical core imports no integration: every module under cases/ is read with `ast` (lazy
imports inside functions included) and may not import webhooks, pacs or fhir_api. Integrations
hear the core through the outbox (cases.events.publish) and register themselves."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "cases"
INTEGRATIONS = {"webhooks", "pacs", "fhir_api"}

# Still to move (issue 22), each with what it imports. Remove a line when its module is clean:
# the test fails on a stale entry, so the list only shrinks.
ALLOWED = {
    # the SR download and Hounsfield values: to reach pacs through a layer above cases.
    "cases/files.py": {"pacs"},
    # DICOM upload handling (pacs.ingest.study_upload): a registered handler or a layer above.
    "cases/views.py": {"pacs"},
    "cases/api/views.py": {"pacs"},
}


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports, anywhere in it (relative imports stay inside)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found


def core_imports() -> dict[str, set[str]]:
    return {
        str(path.relative_to(ROOT)): imported_packages(path) & INTEGRATIONS
        for path in sorted(CORE.rglob("*.py"))
    }


def test_the_clinical_core_imports_no_integration():
    wrong = {
        module: sorted(found - ALLOWED.get(module, set()))
        for module, found in core_imports().items()
        if found - ALLOWED.get(module, set())
    }
    assert wrong == {}, "cases/ must not import an integration; publish an event (cases.events) instead"


def test_the_allow_list_names_only_modules_that_still_need_it():
    found = core_imports()
    stale = {module: sorted(allowed - found.get(module, set())) for module, allowed in ALLOWED.items()}
    assert {module: names for module, names in stale.items() if names} == {}, "remove these from ALLOWED"


def test_the_check_sees_every_kind_of_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "import pacs.ingest\nfrom webhooks import events\nfrom . import models\n"
        "def late():\n    from fhir_api.links import resource_url\n"
        "    return importlib.import_module('pacs.services')\n"
    )
    assert imported_packages(module) & INTEGRATIONS == {"pacs", "webhooks", "fhir_api"}
