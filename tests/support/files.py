"""Files as people attach them: photos with camera metadata, PDFs, text, and bad ones."""

from __future__ import annotations

import io

from PIL import ExifTags, Image
from pypdf import PdfWriter
from pypdf.generic import NameObject, StreamObject


def photo(width: int = 3000, height: int = 2000, fmt: str = "JPEG", gps: bool = True) -> bytes:
    """A photo as a phone takes it: EXIF with the camera, an orientation and a position."""
    image = Image.new("RGB", (width, height), (200, 120, 40))
    for x in range(0, width, 50):  # some detail, so the encoder has work
        image.paste((x % 255, 30, 200), (x, 0, x + 10, height))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneMaker"
    exif[ExifTags.Base.Model] = "Phone 12"
    if gps:
        gps_ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps_ifd[ExifTags.GPS.GPSLatitudeRef] = "N"
        gps_ifd[ExifTags.GPS.GPSLatitude] = (39.0, 54.0, 26.0)
        gps_ifd[ExifTags.GPS.GPSLongitudeRef] = "E"
        gps_ifd[ExifTags.GPS.GPSLongitude] = (116.0, 23.0, 30.0)
    out = io.BytesIO()
    image.save(out, fmt, exif=exif)
    return out.getvalue()


def png(width: int = 64, height: int = 48, mode: str = "RGBA") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), (10, 200, 90, 255) if mode == "RGBA" else 128).save(out, "PNG")
    return out.getvalue()


def bomb() -> bytes:
    """A few kilobytes of PNG that decode to 100 million pixels."""
    out = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(out, "PNG")
    return out.getvalue()


def pdf(text: str = "Quarterly report: revenue grew by 12 percent.") -> bytes:
    """A one-page PDF whose text pypdf extracts."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    font = writer._add_object(
        _dictionary(
            {"/Type": "/Font", "/Subtype": "/Type1", "/BaseFont": "/Helvetica"},
        )
    )
    page[NameObject("/Resources")] = _dictionary({"/Font": _dictionary({"/F1": font})})
    stream = StreamObject()
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream.set_data(f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(stream)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _dictionary(items: dict) -> object:
    from pypdf.generic import DictionaryObject

    result = DictionaryObject()
    for key, value in items.items():
        result[NameObject(key)] = NameObject(value) if isinstance(value, str) else value
    return result
