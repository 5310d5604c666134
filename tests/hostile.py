"""A corpus of hostile and broken uploads, built by the tests (nothing binary is committed).

Each entry: (file name, bytes, words the refusal must contain)."""

import io
import struct
import zlib

from PIL import Image


def _png(size=(64, 64), mode="L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, format="PNG")
    return buffer.getvalue()


def _encode(fmt: str, size=(32, 32), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (200, 10, 10) if mode == "RGB" else 100).save(buffer, format=fmt)
    return buffer.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG whose header promises a gigapixel image of zeros."""
    row = b"\x00" + b"\x00" * width
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(200)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def jpeg_with_huge_header() -> bytes:
    """A real JPEG whose SOF0 frame header is rewritten to claim 65000×65000 pixels."""
    data = bytearray(_encode("JPEG", mode="L"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)
    return bytes(data)


def corrupt_png() -> bytes:
    data = bytearray(_png((128, 128)))
    idat = data.find(b"IDAT")
    for i in range(idat + 10, min(idat + 60, len(data) - 20)):
        data[i] ^= 0x5A
    return bytes(data)


def big_noise_png() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((600, 600), 90).convert("L").save(buffer, format="PNG")
    return buffer.getvalue()


def multi_picture_jpeg() -> bytes:
    """An MPO: several pictures in one JPEG file (some cameras), which Pillow opens as JPEG."""
    buffer = io.BytesIO()
    picture = Image.new("RGB", (32, 32), (90, 90, 90))
    picture.save(buffer, format="MPO", save_all=True, append_images=[picture])
    return buffer.getvalue()


def ct_like(size: int = 256) -> Image.Image:
    """Something with a CT slice's texture: a disc of noise on black, so that JPEG has data to cut."""
    disc = Image.radial_gradient("L").resize((size, size)).point(lambda v: 255 if v < 100 else 0)
    return Image.composite(Image.effect_noise((size, size), 60).convert("L"), Image.new("L", disc.size), disc)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def truncated_jpeg_with_eoi(data: bytes | None = None, keep: float = 0.6) -> bytes:
    """Half a JPEG followed by an FFD9 marker: libjpeg only warns ("premature end of data segment")
    and Pillow fills the missing rows with grey."""
    data = data or jpeg_bytes(ct_like())
    return data[: int(len(data) * keep)] + b"\xff\xd9"


def progressive_jpeg_cut_after_a_scan() -> bytes:
    """A progressive JPEG whose last scans are replaced by EOI: libjpeg decodes it without a warning."""
    data = jpeg_bytes(ct_like(), progressive=True)
    last_scan = data.rfind(b"\xff\xda")  # FFDA cannot occur in entropy-coded data (FF is stuffed)
    return data[:last_scan] + b"\xff\xd9"


def _png_from_rows(rows: bytes, size: tuple[int, int], idat: bytes | None = None) -> bytes:
    header = struct.pack(">IIBBBBB", size[0], size[1], 8, 0, 0, 0, 0)
    pixels = zlib.compress(rows) if idat is None else idat
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def _gradient_rows(width: int = 128, height: int = 128) -> bytes:
    return b"".join(b"\x00" + bytes((x + y) % 256 for x in range(width)) for y in range(height))


def png_with_short_pixel_data() -> bytes:
    """A complete zlib stream holding half the rows: Pillow loads it and leaves the rest blank."""
    rows = _gradient_rows()
    return _png_from_rows(rows[: len(rows) // 2], (128, 128))


def png_with_cut_pixel_data() -> bytes:
    """The compressed pixel data cut in half, chunk CRC and IEND made valid again."""
    compressed = zlib.compress(_gradient_rows())
    return _png_from_rows(b"", (128, 128), idat=compressed[: len(compressed) // 2])


def png_with_bad_crc() -> bytes:
    data = bytearray(_png_from_rows(_gradient_rows(), (128, 128)))
    iend = data.rfind(b"IEND")
    data[iend - 5] ^= 0xFF  # the last byte of the IDAT chunk's CRC, before IEND's length and type
    return bytes(data)


def animated_png() -> bytes:
    buffer = io.BytesIO()
    frames = [Image.new("L", (64, 64), value) for value in (40, 200)]
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


HTML = b"<html><script>alert(document.cookie)</script></html>"


def jpeg_html_before_final_eoi() -> bytes:
    """Polyglot: HTML after the image, then an FFD9 so that the file still ends like a JPEG."""
    return jpeg_bytes(ct_like(64)) + HTML + b"\xff\xd9"


def png_html_before_fake_iend() -> bytes:
    """Polyglot: HTML after the image, then a second IEND chunk so that the file ends like a PNG."""
    return _png() + HTML + _chunk(b"IEND", b"")


def jpeg_html_in_comment() -> bytes:
    """Polyglot: HTML in a JPEG comment (COM) segment, a valid part of the file."""
    data = jpeg_bytes(ct_like(64))
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(HTML) + 2) + HTML + data[2:]


def corpus(max_file_bytes: int) -> list[tuple[str, bytes, str]]:
    png, jpeg = _png(), _encode("JPEG", size=(64, 64))
    assert len(big_noise_png()) > max_file_bytes, "the oversized entry must exceed the limit under test"
    return [
        ("empty.png", b"", "empty"),
        ("notes.png", b"Patient notes, not an image.\n", "not a jpeg or png"),
        ("page.jpg", b"<!doctype html><script>alert(document.cookie)</script>", "not a jpeg or png"),
        (
            "image.svg",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            "not a jpeg or png",
        ),
        ("truncated.png", _png((256, 256))[:120], "truncated or corrupt"),
        ("truncated.jpg", _encode("JPEG", (256, 256))[:300], "truncated or corrupt"),
        ("corrupt.png", corrupt_png(), "truncated or corrupt"),
        ("signature-only.png", b"\x89PNG\r\n\x1a\n", "truncated or corrupt"),
        ("soi-only.jpg", b"\xff\xd8\xff", "truncated or corrupt"),
        ("bomb.png", png_bomb(), "pixels"),
        ("huge-header.jpg", jpeg_with_huge_header(), "pixels"),
        ("wide.png", _png((9000, 1)), "longest side"),
        ("animated.gif", _encode("GIF", mode="L"), "not a jpeg or png"),
        ("camera.jpg", multi_picture_jpeg(), "not a jpeg or png"),
        ("bitmap.png", _encode("BMP"), "not a jpeg or png"),
        ("scan.tiff", _encode("TIFF"), "not a jpeg or png"),
        ("photo.webp", _encode("WEBP"), "not a jpeg or png"),
        ("report.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "not a jpeg or png"),
        ("archive.png", b"PK\x03\x04" + b"\x00" * 60, "zip"),
        ("program.jpg", b"MZ\x90\x00" + b"\x00" * 200, "not a jpeg or png"),
        ("elf.png", b"\x7fELF" + b"\x00" * 100, "not a jpeg or png"),
        ("polyglot-zip.png", png + b"PK\x03\x04" + b"\x00" * 40, "extra data after the image"),
        ("polyglot-html.jpg", jpeg + b"<html><script>alert(1)</script></html>", "extra data after the image"),
        ("slice.dcm", b"\x00" * 128 + b"DICM" + b"\x00" * 64, "dicom"),
        ("nulls.jpg", b"\x00" * 4096, "not a jpeg or png"),
        ("../../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n", "not a jpeg or png"),
        ("..\\..\\windows\\win.ini", b"[fonts]\n", "not a jpeg or png"),
        ("oversized.png", big_noise_png(), "larger than"),
        # Issue 11: each of these was stored and classified.
        ("half.jpg", truncated_jpeg_with_eoi(), "truncated or corrupt"),
        ("progressive-cut.jpg", progressive_jpeg_cut_after_a_scan(), "truncated or corrupt"),
        ("short-pixels.png", png_with_short_pixel_data(), "truncated or corrupt"),
        ("cut-pixels.png", png_with_cut_pixel_data(), "truncated or corrupt"),
        ("bad-crc.png", png_with_bad_crc(), "checksum"),
        ("dot.png", _png((1, 1)), "too small"),
        ("thin.png", _png((512, 63)), "too small"),
        ("polyglot-eoi.jpg", jpeg_html_before_final_eoi(), "extra data after the image"),
        ("polyglot-iend.png", png_html_before_fake_iend(), "extra data after the image"),
        ("animated.png", animated_png(), "animated"),
    ]
