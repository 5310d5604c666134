"""The slice viewer in headless Chromium, on the scan page: keyboard scrolling, the window, the
heatmap overlay, the starting slice, a phone's width and axe-core's verdict."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from cases import services
from cases.models import Prediction, Scan, SliceResult
from inference.predictor import heatmap_png
from tests.conftest import upload

from .conftest import PHONE, new_page, serious_accessibility_findings, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SLICES = 6
SIZE = (160, 120)  # not square: the overlay must follow the slice's own geometry
# p_malignant per slice position; the heatmaps go to the two most suspicious.
P_MALIGNANT = [0.10, 0.20, 0.90, 0.05, 0.70, 0.30]
CANVAS = "[data-role=viewport] canvas"


def slice_png(number: int) -> bytes:
    """A different picture per slice: mid greys (so the window matters) and a block that moves."""
    width, height = SIZE
    pixels = np.tile(np.linspace(60, 190, width, dtype=np.float32), (height, 1))
    left = 10 + number * 20
    pixels[30:90, left : left + 18] = 230
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def scan_with_slices(patient: Any, user: Any) -> Scan:
    files = [upload(f"s{number}.png", slice_png(number)) for number in range(1, SLICES + 1)]
    return services.scan_upload(patient=patient, files=files, uploaded_by=user)


def add_results(scan: Scan) -> list[SliceResult]:
    """A finished prediction as a worker stores it, with RGBA overlay heatmaps (no worker needed)."""
    prediction = scan.predictions.get()
    ranked = sorted(range(SLICES), key=lambda i: -P_MALIGNANT[i])
    heat = np.zeros((256, 256), dtype=np.float32)
    heat[96:160, 96:160] = 1.0
    results = []
    for index, item in enumerate(scan.slices.order_by("position")):
        heatmap = ""
        if index in ranked[:2]:
            heatmap = default_storage.save(
                f"heatmaps/test-{index}.png", ContentFile(heatmap_png(heat, size=(item.width, item.height)))
            )
        p = P_MALIGNANT[index]
        results.append(
            SliceResult.objects.create(
                prediction=prediction,
                slice=item,
                label="malignant" if p > 0.5 else "normal",
                p_normal=1 - p,
                p_benign=0.0,
                p_malignant=p,
                heatmap=heatmap,
            )
        )
    Prediction.objects.filter(pk=prediction.pk).update(
        status="succeeded",
        label="malignant",
        p_normal=0.1,
        p_benign=0.0,
        p_malignant=0.9,
        suspicion=0.9,
        suspicious_slices=2,
        finding="Suspicious for malignancy.",
    )
    return results


def open_viewer(page: Any, live_server: Any, scan: Scan, query: str = "") -> Any:
    page.goto(f"{live_server.url}{scan.get_absolute_url()}{query}")
    page.wait_for_selector("[data-viewer][data-ready=true]")
    return page.locator("[data-viewer]")


def canvas_pixels(page: Any) -> str:
    return page.eval_on_selector(CANVAS, "canvas => canvas.toDataURL()")


def wait_for_new_pixels(page: Any, before: str) -> str:
    page.wait_for_function(
        "([selector, before]) => document.querySelector(selector).toDataURL() !== before",
        arg=[CANVAS, before],
    )
    return canvas_pixels(page)


@pytest.fixture
def scan(patient, alice) -> Scan:
    return scan_with_slices(patient, alice)


def test_keyboard_scrolls_through_the_slices_in_order(page, live_server, alice, scan) -> None:
    sign_in(page, live_server, alice)
    viewer = open_viewer(page, live_server, scan)
    assert viewer.get_attribute("data-slice") == "1"  # no result and no ?slice=: the first
    viewport = page.locator("[data-role=viewport]")
    assert viewport.get_attribute("aria-label").startswith(f"Slice 1 of {SLICES}")
    first = canvas_pixels(page)

    viewport.focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_selector("[data-viewer][data-slice='2']")
    second = wait_for_new_pixels(page, first)
    assert second != first
    assert viewport.get_attribute("aria-label").startswith(f"Slice 2 of {SLICES}")
    assert page.locator("#viewer-slice").input_value() == "2"

    page.keyboard.press("End")
    page.wait_for_selector(f"[data-viewer][data-slice='{SLICES}']")
    page.keyboard.press("ArrowDown")  # past the end: stays on the last
    page.keyboard.press("Home")
    page.wait_for_selector("[data-viewer][data-slice='1']")
    page.keyboard.press("ArrowUp")  # before the first: stays
    page.keyboard.press("PageDown")
    page.wait_for_selector("[data-viewer][data-slice='6']")
    page.keyboard.press("ArrowUp")
    page.wait_for_selector("[data-viewer][data-slice='5']")
    assert page.locator("[data-role=status]").inner_text().startswith(f"Slice 5 of {SLICES}")

    # The slider and the mouse wheel move through the slices too.
    page.locator("#viewer-slice").fill("3")
    page.wait_for_selector("[data-viewer][data-slice='3']")
    viewport.scroll_into_view_if_needed()
    box = viewport.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 120)
    page.wait_for_selector("[data-viewer][data-slice='4']")


def test_window_changes_the_drawn_pixels_and_presets_need_hounsfield_units(
    page, live_server, alice, scan
) -> None:
    sign_in(page, live_server, alice)
    viewer = open_viewer(page, live_server, scan)
    assert viewer.get_attribute("data-window-width") == "256"
    before = canvas_pixels(page)

    page.fill("#viewer-window-width", "40")
    page.fill("#viewer-window-center", "120")
    page.wait_for_selector("[data-viewer][data-window-width='40'][data-window-center='120']")
    narrow = wait_for_new_pixels(page, before)
    assert narrow != before
    assert "W 40 / C 120" in page.locator("[data-role=status]").inner_text()

    # The window stays as the reader set it from slice to slice.
    page.locator("[data-role=viewport]").focus()
    page.keyboard.press("ArrowDown")
    page.wait_for_selector("[data-viewer][data-slice='2'][data-window-width='40']")

    page.click("text=Reset window")
    page.wait_for_selector("[data-viewer][data-window-width='256']")

    # Dragging in the image sets the window too (Cornerstone's window/level tool).
    page.locator("[data-role=viewport]").scroll_into_view_if_needed()
    box = page.locator("[data-role=viewport]").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(box["x"] + 160, box["y"] + 140, steps=5)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('[data-viewer]').dataset.windowWidth !== '256'")

    # No Hounsfield units in 8-bit PNGs: the presets are there, disabled, with the reason shown.
    assert page.locator("button[data-preset=lung]").is_disabled()
    assert page.locator("button[data-preset=mediastinum]").is_disabled()
    assert page.locator("#viewer-hu-note").is_visible()


def test_heatmap_overlay_follows_the_image_and_toggles(page, live_server, alice, scan) -> None:
    add_results(scan)
    sign_in(page, live_server, alice)
    viewer = open_viewer(page, live_server, scan)
    # A result: it opens at the most suspicious slice, whose heatmap shows.
    assert viewer.get_attribute("data-slice") == "3"
    page.wait_for_selector("[data-viewer][data-heatmap=on]")
    overlay = page.locator("[data-role=overlay]")
    assert overlay.is_visible()
    box = overlay.bounding_box()
    stage = page.locator(".viewer-stage").bounding_box()
    # Laid over the image: the slice's aspect ratio, centred in the square stage, fitting its width.
    assert box["width"] / box["height"] == pytest.approx(SIZE[0] / SIZE[1], rel=0.02)
    assert box["width"] == pytest.approx(stage["width"], rel=0.02)
    assert box["y"] + box["height"] / 2 == pytest.approx(stage["y"] + stage["height"] / 2, abs=2)
    with_heatmap = page.locator(".viewer-stage").screenshot()

    page.uncheck("text=Show heatmap")
    page.wait_for_selector("[data-viewer][data-heatmap=off]")
    assert not overlay.is_visible()
    assert page.locator(".viewer-stage").screenshot() != with_heatmap
    page.check("text=Show heatmap")
    page.wait_for_selector("[data-viewer][data-heatmap=on]")
    assert overlay.is_visible()

    # Zoom with the keyboard: the overlay grows with the image.
    page.locator("[data-role=viewport]").focus()
    page.keyboard.press("+")
    page.wait_for_function(
        "width => document.querySelector('[data-role=overlay]').getBoundingClientRect().width > width * 1.1",
        arg=box["width"],
    )

    # A slice without a heatmap: nothing laid over it, the controls off, the reason shown.
    page.keyboard.press("ArrowDown")
    page.wait_for_selector("[data-viewer][data-slice='4'][data-heatmap=none]")
    assert not overlay.is_visible()
    assert page.locator("[data-role=heatmap-toggle]").is_disabled()
    assert page.locator("[data-role=heatmap-note]").is_visible()


def test_viewer_opens_at_the_slice_asked_for_and_jumps_to_the_most_suspicious(
    page, live_server, alice, scan
) -> None:
    add_results(scan)
    sign_in(page, live_server, alice)
    viewer = open_viewer(page, live_server, scan, "?slice=2")
    assert viewer.get_attribute("data-slice") == "2"
    buttons = page.locator("[data-role=ranked] button")
    assert buttons.count() == 5
    assert buttons.first.inner_text().startswith("1. Slice 3")
    buttons.nth(1).click()  # the second most suspicious: slice 5
    page.wait_for_selector("[data-viewer][data-slice='5'][data-heatmap=on]")

    viewer = open_viewer(page, live_server, scan, "?slice=99")  # out of range: the most suspicious
    assert viewer.get_attribute("data-slice") == "3"


def test_viewer_fits_a_phone_and_axe_finds_nothing_serious(chromium, live_server, alice, scan) -> None:
    add_results(scan)
    page = new_page(chromium, viewport=PHONE)
    try:
        sign_in(page, live_server, alice)
        open_viewer(page, live_server, scan)
        page.wait_for_selector("[data-viewer][data-heatmap=on]")
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        stage = page.locator(".viewer-stage").bounding_box()
        assert 300 <= stage["width"] <= PHONE["width"]
        assert serious_accessibility_findings(page) == []
    finally:
        page.context.close()


def test_scan_page_with_the_viewer_has_no_serious_accessibility_findings(
    page, live_server, alice, scan
) -> None:
    add_results(scan)
    sign_in(page, live_server, alice)
    open_viewer(page, live_server, scan)
    assert serious_accessibility_findings(page) == []
