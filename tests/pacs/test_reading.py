"""Reading DICOM CT series: real series built from the shared slices, and pydicom's own test files."""

from __future__ import annotations

import hashlib
import struct
from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder
from pydicom.uid import (
    UID,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)

from inference.preprocessing import preprocess
from pacs.reading import (
    DicomInstance,
    DicomRefused,
    can_decode,
    is_dicom,
    model_window,
    read_series,
    readable_name,
    windowed,
)
from tests.pacs.series import ct_series, dataset_slices, jpeg_grey, rewrite

CT_HEADER = {"Modality": "CT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2"}


def pydicom_file(name: str) -> bytes:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom's test file {name} is not installed")
    return Path(str(path)).read_bytes()


def as_ct(data: bytes) -> bytes:
    """One of pydicom's MR test files relabelled as a CT image (same pixels, same encoding)."""
    return rewrite(data, **CT_HEADER, RescaleSlope=1, RescaleIntercept=-1024)


def small(grey: int = 100, size: tuple[int, int] = (64, 64)) -> np.ndarray:
    image = np.full(size, grey, dtype=np.uint8)
    image[::7, ::5] = 255 - grey  # a pattern, so that compression has something to do
    return image


def read_one(files: list[tuple[str, bytes]], **kwargs: Any) -> DicomInstance:
    [series] = read_series(files, max_slices=10, **kwargs)
    [instance] = series.instances
    return instance


def refusal(files: list[tuple[str, bytes]], **kwargs: Any) -> str:
    with pytest.raises(DicomRefused) as caught:
        read_series(files, max_slices=kwargs.pop("max_slices", 10), **kwargs)
    return str(caught.value)


# --- series from the shared slices --------------------------------------------------------------


def test_shuffled_series_comes_back_in_slice_order():
    paths = dataset_slices(6)
    files = ct_series(paths, shuffle=True, seed=3)
    assert [name for name, _ in files] != sorted(name for name, _ in files)  # really shuffled

    [series] = read_series(files, max_slices=10)

    assert [i.name for i in series.instances] == [f"IM{n:04d}.dcm" for n in range(1, 7)]
    assert [i.location for i in series.instances] == [-100.0 + k * 1.25 for k in range(6)]
    for instance, path in zip(series.instances, paths, strict=True):
        assert np.array_equal(windowed(instance.hounsfield, 40.0, 400.0), jpeg_grey(path))


def test_series_metadata_comes_from_the_headers():
    paths = dataset_slices(2, "normal")
    files = ct_series(
        paths,
        series_uid="1.2.826.0.1.3680043.8.498.11",
        study_uid="1.2.826.0.1.3680043.8.498.10",
        patient_id="MRN-0042",
        patient_name="Roe^Jane^Q^Dr",
        birth_date="19610314",
        sex="F",
        accession="ACC-77",
        study_date="20261120",
        slice_thickness=0.625,
        series_number=7,
        series_description="LUNG 0.625",
    )

    [series] = read_series(files, max_slices=10)

    assert series.study_instance_uid == "1.2.826.0.1.3680043.8.498.10"
    assert series.series_instance_uid == "1.2.826.0.1.3680043.8.498.11"
    assert series.series_number == 7
    assert series.modality == "CT"
    assert series.patient_id == "MRN-0042"
    assert series.patient_name == "Dr Jane Q Roe"
    assert series.patient_birth_date == date(1961, 3, 14)
    assert series.patient_sex == "F"
    assert series.accession_number == "ACC-77"
    assert series.study_date == date(2026, 11, 20)
    assert series.series_description == "LUNG 0.625"
    assert series.slice_thickness == 0.625
    assert (series.rows, series.columns) == (512, 512)
    for instance, (name, data) in zip(series.instances, files, strict=True):
        assert instance.name == name
        assert instance.sop_instance_uid == dcmread(BytesIO(data)).SOPInstanceUID
        assert instance.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
        assert instance.source_sha256 == hashlib.sha256(data).hexdigest()
        assert instance.size_bytes == len(data)
        assert (instance.window_center, instance.window_width) == (40.0, 400.0)
        assert instance.hounsfield.dtype == np.int16
        assert not instance.hounsfield.flags.writeable


def test_two_series_in_one_upload_become_two_series_in_order_of_appearance():
    lungs = ct_series(dataset_slices(3, "malignant"), series_number=3, shuffle=True)
    soft = ct_series(dataset_slices(2, "benign"), series_number=2, window=(50.0, 350.0), first_instance=10)
    mixed = [lungs[0], soft[1], lungs[1], soft[0], lungs[2]]

    first, second = read_series(mixed, max_slices=3)

    assert (first.series_number, len(first.instances)) == (3, 3)
    assert (second.series_number, len(second.instances)) == (2, 2)
    assert [i.instance_number for i in second.instances] == [10, 11]
    assert first.study_instance_uid != second.study_instance_uid


def test_hounsfield_is_stored_value_times_slope_plus_intercept():
    hounsfield = np.array([[-1024, -1000, 0, 40], [400, 1000, 3071, -2048]], dtype=np.int16)
    image = np.kron(hounsfield, np.ones((32, 16), dtype=np.int16))  # 64×64
    for slope, intercept in ((1.0, -1024.0), (0.5, -1000.0), (0.25, -2048.0)):
        files = ct_series([image], slope=slope, intercept=intercept)
        stored = dcmread(BytesIO(files[0][1])).pixel_array
        assert np.array_equal(stored * slope + intercept, image)  # what was written is really stored

        assert np.array_equal(read_one(files).hounsfield, image)


def test_hounsfield_is_clipped_to_int16():
    data = rewrite(pydicom_file("CT_small.dcm"), RescaleIntercept=32000)
    stored = dcmread(BytesIO(data)).pixel_array

    instance = read_one([("CT_small.dcm", data)])

    assert instance.hounsfield.max() == 32767
    assert np.array_equal(instance.hounsfield, np.minimum(stored.astype(np.int32) + 32000, 32767))


def encoder_available(syntax: UID) -> bool:
    if not syntax.is_compressed:
        return True
    try:
        return bool(get_encoder(syntax).is_available)
    except NotImplementedError:
        return False


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless, ImplicitVRLittleEndian])
def test_compressed_series_decode_equal_to_uncompressed(syntax):
    if not encoder_available(syntax):
        pytest.skip(f"no installed encoder writes {syntax.name} (decoding it is tested with pydicom's files)")
    paths = dataset_slices(3, "benign")
    plain = read_series(ct_series(paths, series_uid="1.2.3.1", study_uid="1.2.3"), max_slices=3)
    files = ct_series(paths, series_uid="1.2.3.1", study_uid="1.2.3", transfer_syntax=syntax, shuffle=True)
    assert {dcmread(BytesIO(data)).file_meta.TransferSyntaxUID for _, data in files} == {syntax}

    [series] = read_series(files, max_slices=3)

    for got, want in zip(series.instances, plain[0].instances, strict=True):
        assert np.array_equal(got.hounsfield, want.hounsfield)


# --- pydicom's own test files -------------------------------------------------------------------


def test_pydicoms_ct_small_is_read():
    data = pydicom_file("CT_small.dcm")
    stored = dcmread(BytesIO(data)).pixel_array

    [series] = read_series([("CT_small.dcm", data)], max_slices=1)

    assert series.modality == "CT"
    assert series.patient_name == "CT1 CompressedSamples"  # "CompressedSamples^CT1"
    assert series.study_date == date(2004, 1, 19)
    assert series.slice_thickness == 5.0
    assert (series.rows, series.columns) == (128, 128)
    [instance] = series.instances
    assert np.array_equal(instance.hounsfield, stored.astype(np.int32) - 1024)  # RescaleIntercept -1024
    assert instance.location == pytest.approx(-75.699997)  # ImagePositionPatient z, axial
    assert (instance.window_center, instance.window_width) == (None, None)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
    ],
)
def test_pydicoms_compressed_files_decode_like_the_uncompressed_original(name):
    original = read_one([("MR_small.dcm", as_ct(pydicom_file("MR_small.dcm")))])

    instance = read_one([(name, as_ct(pydicom_file(name)))])

    assert np.array_equal(instance.hounsfield, original.hounsfield)


def test_pydicoms_mr_small_is_refused_as_not_ct():
    message = refusal([("MR_small.dcm", pydicom_file("MR_small.dcm"))])

    assert message.startswith("MR_small.dcm: is not a CT image (Modality MR)")


def test_file_without_a_decoder_for_its_transfer_syntax_is_refused_naming_it():
    # Every syntax pydicom's test files use (JPEG-LS included) decodes here, so the test builds
    # one: CT_small's pixels encapsulated and labelled JPEG 2000 Part 2, which nothing decodes.
    syntax = UID("1.2.840.10008.1.2.4.92")
    assert not can_decode(syntax) and can_decode(JPEGLSLossless)
    ds = dcmread(BytesIO(pydicom_file("CT_small.dcm")))
    ds.PixelData = encapsulate([ds.PixelData])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)

    message = refusal([("IM9.dcm", buffer.getvalue())])

    assert message.startswith("IM9.dcm: ")
    assert (
        "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only) (1.2.840.10008.1.2.4.92)"
        in message
    )


def test_unknown_transfer_syntax_is_refused_naming_it():
    data = rewrite(pydicom_file("CT_small.dcm"), TransferSyntaxUID="1.2.826.0.1.3680043.8.498.9")

    assert "1.2.826.0.1.3680043.8.498.9 (an unknown transfer syntax)" in refusal([("x.dcm", data)])


def test_damaged_pixel_data_is_refused():
    data = as_ct(pydicom_file("MR_truncated.dcm"))  # 8130 of 8192 pixel bytes

    assert "its pixel data (Explicit VR Little Endian" in refusal([("MR_truncated.dcm", data)])


def test_a_decoder_panic_on_a_damaged_stream_is_a_refusal_not_a_crash():
    # pylibjpeg-rle (Rust) panics when runs overflow the frame; pyo3's PanicException is a
    # BaseException, which `except Exception` would let through to kill the request or worker.
    [(name, data)] = ct_series([small()], transfer_syntax=RLELossless)
    ds = dcmread(BytesIO(data))
    segment = bytes([0x81, 0]) * 40  # 40 runs of 128 bytes: 5,120 for a 4,096-byte segment
    header = struct.pack("<16I", 2, 64, 64 + len(segment), *([0] * 13))
    ds.PixelData = encapsulate([header + segment + segment])
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)

    message = refusal([(name, buffer.getvalue())])

    assert message.startswith(
        "IM0001.dcm: its pixel data (RLE Lossless (1.2.840.10008.1.2.5)) cannot be decoded"
    )


def test_files_without_the_part10_header_are_refused():
    for name in ("no_meta.dcm", "ExplVR_LitEndNoMeta.dcm"):
        data = pydicom_file(name)
        assert not is_dicom(data)
        assert refusal([(name, data)]).startswith(f"{name}: is not a DICOM file")


def test_non_image_objects_are_refused():
    report = refusal([("reportsi.dcm", pydicom_file("reportsi.dcm"))])
    segmentation = refusal([("liver_1frame.dcm", pydicom_file("liver_1frame.dcm"))])

    assert "(Modality SR)" in report
    assert "(Modality SEG)" in segmentation


# --- refusals -----------------------------------------------------------------------------------


def test_jpeg_is_refused_as_not_dicom():
    path = dataset_slices(1)[0]
    data = path.read_bytes()
    assert not is_dicom(data)

    message = refusal([(path.name, data)])

    assert message.startswith(f"{path.name}: is not a DICOM file (it is a JPEG image")


def test_missing_pixel_data_is_refused():
    files = ct_series([small(), small(120)])
    files[1] = (files[1][0], rewrite(files[1][1], PixelData=None))

    assert (
        refusal(files)
        == "IM0002.dcm: has no pixel data (PixelData); there is no image to read. Leave it out."
    )


def test_inconsistent_sizes_in_a_series_are_refused():
    files = ct_series([small(), small(size=(64, 64)), small(size=(64, 80))])

    message = refusal(files)

    assert message.startswith("IM0003.dcm: is 80×64 pixels but IM0001.dcm, of the same series")


def test_the_same_instance_twice_is_refused_naming_both_files():
    files = ct_series([small(), small(90)])
    copy = ("again/IM0001.dcm", files[0][1])

    message = refusal([*files, copy])

    uid = dcmread(BytesIO(files[0][1])).SOPInstanceUID
    assert message.startswith(f"again/IM0001.dcm: has the same SOPInstanceUID ({uid}) as IM0001.dcm")


def test_a_series_past_max_slices_is_refused():
    files = ct_series([small(g) for g in range(0, 40, 10)])

    assert "has more than 3 slices" in refusal(files, max_slices=3)
    assert len(read_series(files, max_slices=4)[0].instances) == 4


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"])
def test_missing_uids_are_refused(keyword):
    [(name, data)] = ct_series([small()])

    assert refusal([(name, rewrite(data, **{keyword: None}))]).startswith(f"IM0001.dcm: has no {keyword}")


def test_other_modalities_in_a_ct_file_are_refused():
    [(name, data)] = ct_series([small()], modality="PT")

    assert refusal([(name, data)]).startswith("IM0001.dcm: is not a CT image (Modality PT)")


def test_multi_frame_and_enhanced_ct_are_refused():
    [(name, data)] = ct_series([small()])

    frames = refusal([(name, rewrite(data, NumberOfFrames=2))])
    enhanced = refusal([(name, rewrite(data, SOPClassUID=EnhancedCTImageStorage))])

    assert "holds 2 frames" in frames
    assert "Enhanced CT Image Storage (multi-frame)" in enhanced


def test_colour_images_and_screenshots_are_refused():
    [(name, data)] = ct_series([small()])

    colour = refusal([(name, rewrite(data, PhotometricInterpretation="RGB", SamplesPerPixel=3))])
    screenshot = refusal([(name, rewrite(data, SOPClassUID=SecondaryCaptureImageStorage))])
    scout = refusal([(name, rewrite(data, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]))])

    assert "is a colour image (RGB)" in colour
    assert "Secondary Capture Image Storage object, not a CT image" in screenshot
    assert "is a localizer (scout) image" in scout


def test_slices_outside_the_side_limits_are_refused(settings):
    settings.UPLOAD_MIN_SIDE, settings.UPLOAD_MAX_SIDE = 64, 100
    files = ct_series([small(size=(64, 101))])

    assert "slices must be between 64 and 100 pixels" in refusal(files)
    assert "between 80 and 8192" in refusal(ct_series([small()]), min_side=80, max_side=8192)


def test_missing_rescale_is_refused():
    [(name, data)] = ct_series([small()])

    assert "cannot be turned into Hounsfield units" in refusal([(name, rewrite(data, RescaleIntercept=None))])


# --- ordering -----------------------------------------------------------------------------------


def test_order_falls_back_to_instance_number_then_to_arrival():
    files = ct_series([small(g) for g in (10, 20, 30)], shuffle=True, seed=1)
    no_position = [(name, rewrite(data, ImagePositionPatient=None)) for name, data in files]
    no_number = [(name, rewrite(data, InstanceNumber=None)) for name, data in no_position]

    by_number = read_series(no_position, max_slices=3)[0].instances
    as_received = read_series(no_number, max_slices=3)[0].instances

    assert [i.location for i in by_number] == [None] * 3
    assert [i.instance_number for i in by_number] == [1, 2, 3]
    assert [i.name for i in as_received] == [name for name, _ in files]


def test_location_follows_the_slice_normal_not_just_z():
    # A sagittal series: rows along y, columns along z, so slices step along x.
    files = ct_series([small(g) for g in (10, 20, 30)])
    sagittal = [
        (
            name,
            rewrite(
                data,
                ImageOrientationPatient=[0, 1, 0, 0, 0, -1],
                ImagePositionPatient=[30.0 - 10 * k, -175.0, 175.0],
            ),
        )
        for k, (name, data) in enumerate(files)
    ]

    [series] = read_series(sagittal, max_slices=3)

    # normal = (0,1,0) × (0,0,-1) = (-1,0,0): location = -x
    assert [i.location for i in series.instances] == [-30.0, -20.0, -10.0]
    assert [i.name for i in series.instances] == ["IM0001.dcm", "IM0002.dcm", "IM0003.dcm"]


# --- windows and the model's input ---------------------------------------------------------------


def test_model_window_prefers_the_files_own_window():
    with_window = read_one(ct_series([small()], window=(-600.0, 1500.0)))
    without = read_one(ct_series([small()], window=None))
    nonsense = read_one([(n, rewrite(d, WindowWidth=0)) for n, d in ct_series([small()])])

    assert model_window(with_window, default_center=40, default_width=400) == (-600.0, 1500.0, "file")
    assert model_window(without, default_center=50, default_width=350) == (50.0, 350.0, "default")
    assert model_window(nonsense, default_center=50, default_width=350) == (50.0, 350.0, "default")


def test_model_window_default_comes_from_settings(settings):
    settings.DICOM_DEFAULT_WINDOW_CENTER, settings.DICOM_DEFAULT_WINDOW_WIDTH = 300.0, 1000.0
    instance = read_one(ct_series([small()], window=None))

    assert model_window(instance) == (300.0, 1000.0, "default")


def test_first_of_several_file_windows_is_used():
    [(name, data)] = ct_series([small()])
    data = rewrite(data, WindowCenter=[-500, 40], WindowWidth=[1400, 400])

    assert model_window(read_one([(name, data)]), default_center=40, default_width=400) == (
        -500.0,
        1400.0,
        "file",
    )


def test_windowed_follows_the_dicom_linear_function():
    # c=40, w=400: 0 at or below -160, 255 above 239, linear in between (PS3.3 C.11.2.1.2.1).
    values = np.array([[-1024, -160, -159, 40, 239, 240, 3071]], dtype=np.int16)

    out = windowed(values, 40.0, 400.0)

    assert out.dtype == np.uint8
    expected = [0, 0, 1, round((40 - 39.5) / 399 * 255 + 127.5), 255, 255, 255]
    assert out.tolist() == [expected]
    assert windowed(np.array([[0, 1]], dtype=np.int16), 1.0, 1.0).tolist() == [[0, 255]]
    with pytest.raises(ValueError):
        windowed(values, 40.0, 0.5)


@pytest.mark.parametrize("window", [(40.0, 400.0), (300.0, 1000.0), (600.0, 1200.0), (50.0, 350.0), None])
def test_jpeg_slice_and_the_same_slice_as_dicom_give_the_model_the_same_input(window):
    paths = dataset_slices(2, "malignant")
    files = ct_series(
        paths, window=window, transfer_syntax=JPEG2000Lossless if window else ExplicitVRLittleEndian
    )

    [series] = read_series(files, max_slices=2)

    for instance, path in zip(series.instances, paths, strict=True):
        center, width, source = model_window(instance, default_center=40.0, default_width=400.0)
        assert source == ("file" if window else "default")
        grey = windowed(instance.hounsfield, center, width)
        assert np.array_equal(grey, jpeg_grey(path))
        # The same pixels in, the same model input out: the classifier cannot tell them apart.
        assert np.array_equal(preprocess(Image.fromarray(grey)), preprocess(path.read_bytes()))


def test_builder_writes_a_proper_ct_image_file():
    [(_, data)] = ct_series([small()])
    ds = dcmread(BytesIO(data))  # no force: a real Part 10 file

    assert data[128:132] == b"DICM"
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.Modality == "CT"
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 16, 1)
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
    assert list(ds.ImageOrientationPatient) == [1, 0, 0, 0, 1, 0]
    assert len(ds.PixelSpacing) == 2


@pytest.mark.parametrize(
    ("raw", "readable"),
    [
        ("Roe^Jane", "Jane Roe"),
        ("Roe", "Roe"),
        ("Roe^Jane^Q^Dr^PhD", "Dr Jane Q Roe PhD"),
        ("Yamada^Tarou=山田^太郎", "Tarou Yamada"),
        ("=山田^太郎", "山田 太郎"),
        ("a^b^c^d^e^f", "a b c d e f"),
        ("", ""),
        (None, ""),
    ],
)
def test_readable_name(raw, readable):
    assert readable_name(raw) == readable
