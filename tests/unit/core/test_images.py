"""basic.core.images: upload checks and thumbnails. Every image is generated here with Pillow."""
import io
import warnings
import zipfile

import pytest
from PIL import Image

from basic.core.images import (
    ALLOWED_FORMATS,
    ImageInfo,
    ImageRejected,
    inspect_image,
    make_thumbnail,
    parse_sizes,
    thumbnail_name,
    write_zip,
)

MB = 1024 * 1024
LIMITS = {"max_bytes": 10 * MB, "max_pixels": 25_000_000}


def save(path, size=(120, 80), mode="RGB", fmt=None, color=None, **options):
    image = Image.new(mode, size, color if color is not None else _default_color(mode))
    if mode in ("RGB", "RGBA"):  # some detail so encoders produce real data
        image.paste(_default_color(mode, other=True), (0, 0, size[0] // 2, size[1] // 2))
    image.save(path, format=fmt, **options)
    return path


def _default_color(mode, other=False):
    return {
        "RGB": (0, 0, 255) if other else (200, 30, 30),
        "RGBA": (0, 0, 255, 255) if other else (200, 30, 30, 128),
        "CMYK": (0, 255, 255, 0),
        "L": 128,
        "P": 3,
        "1": 1,
    }[mode]


# --- parse_sizes -------------------------------------------------------------------------------


def test_parse_sizes_default_for_none_and_blank():
    assert parse_sizes(None) == [(128, 128)]
    assert parse_sizes("") == [(128, 128)]
    assert parse_sizes("   ") == [(128, 128)]


def test_parse_sizes_several_in_order():
    assert parse_sizes("128x128,256x256,64x32") == [(128, 128), (256, 256), (64, 32)]


def test_parse_sizes_tolerates_spaces_upper_x_and_trailing_comma():
    assert parse_sizes(" 128 X 128 , 300x200 ,") == [(128, 128), (300, 200)]


def test_parse_sizes_removes_duplicates_keeping_order():
    assert parse_sizes("256x256,128x128,256X256,128x128") == [(256, 256), (128, 128)]


def test_parse_sizes_duplicates_do_not_count_towards_the_limit():
    assert parse_sizes(",".join(["64x64"] * 20)) == [(64, 64)]


def test_parse_sizes_refuses_more_than_max_sizes():
    eight = ",".join(f"{16 + i}x{16 + i}" for i in range(8))
    assert len(parse_sizes(eight)) == 8
    with pytest.raises(ValueError, match="at most 8 sizes"):
        parse_sizes(eight + ",100x100")
    with pytest.raises(ValueError, match="at most 2 sizes"):
        parse_sizes("20x20,30x30,40x40", max_sizes=2)


@pytest.mark.parametrize("text", ["15x128", "128x15", "4097x128", "128x4097", "99999999999999999999x20"])
def test_parse_sizes_refuses_sides_out_of_range(text):
    with pytest.raises(ValueError, match="between 16 and 4096 pixels"):
        parse_sizes(text)


def test_parse_sizes_limits_are_arguments():
    assert parse_sizes("16x16,4096x4096") == [(16, 16), (4096, 4096)]
    with pytest.raises(ValueError, match="between 32 and 64 pixels"):
        parse_sizes("65x40", min_side=32, max_side=64)


@pytest.mark.parametrize("text", ["128", "axb", "0x0", "-1x5", "128x128x128", "128*128", "12 8x128", ",,", "1.5x20"])
def test_parse_sizes_refuses_bad_syntax(text):
    with pytest.raises(ValueError) as info:
        parse_sizes(text)
    message = str(info.value)
    assert message in ("Sizes look like 128x128,256x256.", "Each side must be between 16 and 4096 pixels.")
    if text != "0x0":
        assert message == "Sizes look like 128x128,256x256."


# --- inspect_image -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name", "extension", "mode"),
    [("JPEG", "a.jpg", "jpg", "RGB"), ("PNG", "a.png", "png", "RGBA"), ("WEBP", "a.webp", "webp", "RGB"),
     ("GIF", "a.gif", "gif", "P")],
)
def test_inspect_accepts_allowed_formats(tmp_path, fmt, name, extension, mode):
    path = save(tmp_path / name, size=(120, 80), mode=mode, fmt=fmt)
    assert inspect_image(path, **LIMITS) == ImageInfo(format=fmt, width=120, height=80, extension=extension)
    assert inspect_image(str(path), **LIMITS).format == fmt
    assert fmt in ALLOWED_FORMATS


def test_inspect_accepts_animated_gif(tmp_path):
    frames = [Image.new("P", (40, 30), i) for i in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    assert inspect_image(path, **LIMITS) == ImageInfo("GIF", 40, 30, "gif")


def test_inspect_file_object_left_at_zero(tmp_path):
    data = save(io.BytesIO(), fmt="PNG").getvalue()
    upload = io.BytesIO(data)
    upload.seek(7)
    assert inspect_image(upload, **LIMITS).format == "PNG"
    assert upload.tell() == 0
    with open(save(tmp_path / "x.jpg", fmt="JPEG"), "rb") as handle:
        assert inspect_image(handle, **LIMITS).format == "JPEG"
        assert handle.tell() == 0
        assert not handle.closed


def test_inspect_file_object_left_at_zero_after_rejection():
    upload = io.BytesIO(b"hello, not an image")
    with pytest.raises(ImageRejected):
        inspect_image(upload, **LIMITS)
    assert upload.tell() == 0


def test_inspect_refuses_text_named_like_a_photo(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_text("this is not a picture\n" * 20)
    with pytest.raises(ImageRejected) as info:
        inspect_image(path, **LIMITS)
    assert str(info.value) == "The file is not an image (JPEG, PNG, WebP or GIF)."


def test_inspect_refuses_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageRejected, match="not an image"):
        inspect_image(path, **LIMITS)


def test_inspect_uses_bytes_not_name(tmp_path):
    path = save(tmp_path / "really-a-png.gif", fmt="PNG")
    info = inspect_image(path, **LIMITS)
    assert (info.format, info.extension) == ("PNG", "png")


@pytest.mark.parametrize(("fmt", "name"), [("JPEG", "cut.jpg"), ("PNG", "cut.png")])
def test_inspect_refuses_truncated_image(tmp_path, fmt, name):
    whole = tmp_path / f"whole-{name}"
    image = Image.effect_noise((300, 200), 64).convert("RGB")  # noise: data all through the file
    image.save(whole, format=fmt)
    data = whole.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageRejected) as info:
        inspect_image(path, **LIMITS)
    assert str(info.value) == "The image is damaged or truncated."


def test_inspect_refuses_corrupt_png_checksum(tmp_path):
    data = bytearray(save(io.BytesIO(), size=(64, 64), fmt="PNG").getvalue())
    idat = data.index(b"IDAT")
    data[idat + 8] ^= 0xFF  # flip a byte inside the compressed pixel data
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageRejected, match="damaged or truncated"):
        inspect_image(path, **LIMITS)


def test_inspect_refuses_file_over_max_bytes(tmp_path):
    path = save(tmp_path / "big.png", size=(200, 200), fmt="PNG")
    assert path.stat().st_size > 100
    with pytest.raises(ImageRejected) as info:
        inspect_image(path, max_bytes=100, max_pixels=10**8)
    assert str(info.value).startswith("The file is too large: the limit is ")
    assert str(info.value).endswith(" MB.")
    with pytest.raises(ImageRejected, match="the limit is 5 MB"):
        inspect_image(io.BytesIO(b"\0" * (5 * MB + 1)), max_bytes=5 * MB, max_pixels=10**8)


def test_inspect_size_checked_before_content(tmp_path):
    path = tmp_path / "junk.jpg"
    path.write_bytes(b"junk" * 100)
    with pytest.raises(ImageRejected, match="too large"):
        inspect_image(path, max_bytes=10, max_pixels=10**8)


def test_inspect_refuses_too_many_pixels_small_limit(tmp_path):
    path = save(tmp_path / "hundred.png", size=(100, 100), fmt="PNG")
    with pytest.raises(ImageRejected) as info:
        inspect_image(path, max_bytes=MB, max_pixels=1000)
    assert str(info.value) == (
        "The image has too many pixels to process safely (100x100): the limit is 0.001 megapixels."
    )
    assert inspect_image(path, max_bytes=MB, max_pixels=10_000).width == 100  # exactly at the limit


def test_inspect_refuses_bomb_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("1", (10000, 10000)).save(path, format="PNG")  # tiny file, 100 megapixels
    assert path.stat().st_size < MB

    def no_decoding(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageRejected) as info:
            inspect_image(path, max_bytes=MB, max_pixels=25_000_000)
    assert str(info.value) == (
        "The image has too many pixels to process safely (10000x10000): the limit is 25 megapixels."
    )


def test_inspect_turns_pillow_bomb_guard_into_rejection(tmp_path, monkeypatch):
    """Our limit above Pillow's own: Pillow's warning/error must not escape as such."""
    path = save(tmp_path / "medium.png", size=(100, 100), fmt="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # 10000 pixels: over the limit, under twice it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageRejected, match="0.006 megapixels"):
            inspect_image(path, max_bytes=MB, max_pixels=10**8)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # over twice it: DecompressionBombError
    with pytest.raises(ImageRejected, match="too many pixels"):
        inspect_image(path, max_bytes=MB, max_pixels=10**8)


@pytest.mark.parametrize(("fmt", "name"), [("BMP", "a.bmp"), ("TIFF", "a.tiff"), ("BMP", "sneaky.jpg")])
def test_inspect_refuses_other_image_formats(tmp_path, fmt, name):
    path = save(tmp_path / name, fmt=fmt)
    with pytest.raises(ImageRejected, match=r"^The file is not an image \(JPEG, PNG, WebP or GIF\)\.$"):
        inspect_image(path, **LIMITS)


def test_image_rejected_is_a_value_error():
    assert issubclass(ImageRejected, ValueError)


# --- make_thumbnail ----------------------------------------------------------------------------


def thumb_of(tmp_path, source, box, name="out"):
    dest = tmp_path / f"{name}{source.suffix}"
    written = make_thumbnail(source, box, dest, max_pixels=25_000_000)
    with Image.open(dest) as image:
        assert image.size == written
        return written, image.format, image.mode


def test_thumbnail_landscape(tmp_path):
    source = save(tmp_path / "wide.jpg", size=(1000, 500), fmt="JPEG")
    assert thumb_of(tmp_path, source, (128, 128)) == ((128, 64), "JPEG", "RGB")


def test_thumbnail_portrait(tmp_path):
    source = save(tmp_path / "tall.png", size=(300, 600), fmt="PNG")
    assert thumb_of(tmp_path, source, (128, 128))[0] == (64, 128)


def test_thumbnail_non_square_box(tmp_path):
    source = save(tmp_path / "square.webp", size=(400, 400), fmt="WEBP")
    assert thumb_of(tmp_path, source, (200, 100)) == ((100, 100), "WEBP", "RGB")


def test_thumbnail_never_upscales(tmp_path):
    source = save(tmp_path / "small.png", size=(50, 40), fmt="PNG")
    assert thumb_of(tmp_path, source, (128, 128))[0] == (50, 40)


def exif_rotated_jpeg(path, orientation=6):
    exif = Image.Exif()
    exif[0x0112] = orientation
    save(path, size=(400, 200), fmt="JPEG", exif=exif)
    return path


def test_thumbnail_applies_exif_orientation(tmp_path):
    source = exif_rotated_jpeg(tmp_path / "rotated.jpg")
    assert thumb_of(tmp_path, source, (128, 128))[0] == (64, 128)


def test_thumbnail_exif_orientation_with_non_square_box(tmp_path):
    source = exif_rotated_jpeg(tmp_path / "rotated.jpg")  # shown as 200x400
    assert thumb_of(tmp_path, source, (200, 100), name="a")[0] == (50, 100)
    assert thumb_of(tmp_path, source, (100, 400), name="b")[0] == (100, 200)
    with Image.open(tmp_path / "a.jpg") as image:
        assert image.getexif().get(0x0112) is None  # not rotated twice by a viewer


def test_thumbnail_cmyk_jpeg(tmp_path):
    source = save(tmp_path / "print.jpg", size=(300, 200), mode="CMYK", fmt="JPEG")
    assert thumb_of(tmp_path, source, (150, 150)) == ((150, 100), "JPEG", "RGB")


def test_thumbnail_grey_jpeg_stays_grey(tmp_path):
    source = save(tmp_path / "grey.jpg", size=(300, 200), mode="L", fmt="JPEG")
    assert thumb_of(tmp_path, source, (150, 150)) == ((150, 100), "JPEG", "L")


def test_thumbnail_palette_gif(tmp_path):
    source = save(tmp_path / "pal.gif", size=(300, 150), mode="P", fmt="GIF")
    written, fmt, _mode = thumb_of(tmp_path, source, (100, 100))
    assert (written, fmt) == ((100, 50), "GIF")


def test_thumbnail_transparent_gif_keeps_transparency(tmp_path):
    image = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    image.paste((0, 200, 0, 255), (50, 25, 150, 75))
    source = tmp_path / "clear.gif"
    image.save(source, format="GIF")
    make_thumbnail(source, (100, 100), tmp_path / "out.gif", max_pixels=10**6)
    with Image.open(tmp_path / "out.gif") as out:
        assert out.size == (100, 50)
        rgba = out.convert("RGBA")
        assert rgba.getpixel((1, 1))[3] == 0
        assert rgba.getpixel((50, 25))[3] == 255


def test_thumbnail_animated_gif_first_frame(tmp_path):
    frames = [Image.new("P", (200, 100), i) for i in range(3)]
    source = tmp_path / "anim.gif"
    frames[0].save(source, save_all=True, append_images=frames[1:], duration=50)
    assert thumb_of(tmp_path, source, (50, 50))[:2] == ((50, 25), "GIF")


def test_thumbnail_rgba_png_keeps_alpha(tmp_path):
    source = save(tmp_path / "alpha.png", size=(256, 128), mode="RGBA", fmt="PNG")
    assert thumb_of(tmp_path, source, (64, 64)) == ((64, 32), "PNG", "RGBA")


@pytest.mark.parametrize("mode", ["1", "L"])
def test_thumbnail_png_other_modes(tmp_path, mode):
    source = save(tmp_path / f"mode-{mode}.png", size=(256, 128), mode=mode, fmt="PNG")
    assert thumb_of(tmp_path, source, (64, 64))[:2] == ((64, 32), "PNG")


def test_thumbnail_keeps_source_format_not_name(tmp_path):
    source = save(tmp_path / "png-in-disguise.jpg", size=(256, 128), fmt="PNG")
    dest = tmp_path / "out.png"
    make_thumbnail(source, (64, 64), dest, max_pixels=10**6)
    with Image.open(dest) as image:
        assert image.format == "PNG"


def test_thumbnail_refuses_unreadable_source(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("no pixels here")
    with pytest.raises(ImageRejected, match="not an image"):
        make_thumbnail(text, (64, 64), tmp_path / "out.jpg", max_pixels=10**6)
    noise = tmp_path / "noise.jpg"
    Image.effect_noise((400, 300), 64).convert("RGB").save(noise, format="JPEG")
    data = noise.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageRejected, match="damaged or truncated"):
        make_thumbnail(cut, (64, 64), tmp_path / "cut-out.jpg", max_pixels=10**6)
    assert not (tmp_path / "cut-out.jpg").exists()


def test_thumbnail_checks_pixels(tmp_path):
    source = save(tmp_path / "big.png", size=(200, 200), fmt="PNG")
    with pytest.raises(ImageRejected, match="too many pixels"):
        make_thumbnail(source, (64, 64), tmp_path / "out.png", max_pixels=1000)


# --- thumbnail_name ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stem", "box", "extension", "expected"),
    [
        ("photo", (128, 128), "jpg", "photo-128x128.jpg"),
        ("my holiday (1)", (64, 32), "png", "my-holiday-1-64x32.png"),
        ("../../etc/passwd", (16, 16), "gif", "etc-passwd-16x16.gif"),
        ("Café_été.v2", (100, 50), "webp", "Cafe_ete.v2-100x50.webp"),
        ("", (128, 128), "jpg", "image-128x128.jpg"),
        ("...", (128, 128), "jpg", "image-128x128.jpg"),
        ("照片", (128, 128), ".JPG", "image-128x128.jpg"),
    ],
)
def test_thumbnail_name(stem, box, extension, expected):
    assert thumbnail_name(stem, box, extension) == expected


def test_thumbnail_name_stem_at_most_60_chars():
    name = thumbnail_name("a" * 200, (128, 128), "jpg")
    assert name == "a" * 60 + "-128x128.jpg"


def test_thumbnail_name_refuses_odd_extension():
    with pytest.raises(ValueError):
        thumbnail_name("photo", (128, 128), "jpg/../x")


# --- write_zip ---------------------------------------------------------------------------------


def test_write_zip_round_trip(tmp_path):
    jpg = save(tmp_path / "a.jpg", fmt="JPEG")
    txt = tmp_path / "readme.txt"
    txt.write_text("hello " * 100)
    dest = tmp_path / "out" / "thumbs.zip"
    write_zip(dest, [("photo-128x128.jpg", jpg), ("readme.txt", str(txt))])
    with zipfile.ZipFile(dest) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == ["photo-128x128.jpg", "readme.txt"]
        assert zf.read("photo-128x128.jpg") == jpg.read_bytes()
        assert zf.read("readme.txt") == txt.read_bytes()
        assert zf.getinfo("photo-128x128.jpg").compress_type == zipfile.ZIP_STORED
        assert zf.getinfo("readme.txt").compress_type == zipfile.ZIP_DEFLATED
    assert [p.name for p in dest.parent.iterdir()] == ["thumbs.zip"]  # no temp file left


def test_write_zip_empty(tmp_path):
    write_zip(tmp_path / "empty.zip", [])
    with zipfile.ZipFile(tmp_path / "empty.zip") as zf:
        assert zf.namelist() == []


@pytest.mark.parametrize("arcname", ["", ".", "..", "../x.jpg", "dir/x.jpg", "/x.jpg", "a\\b.jpg", "C:x.jpg"])
def test_write_zip_refuses_non_plain_names(tmp_path, arcname):
    jpg = save(tmp_path / "a.jpg", fmt="JPEG")
    with pytest.raises(ValueError):
        write_zip(tmp_path / "x.zip", [(arcname, jpg)])
    assert not (tmp_path / "x.zip").exists()


def test_write_zip_refuses_duplicate_names(tmp_path):
    jpg = save(tmp_path / "a.jpg", fmt="JPEG")
    with pytest.raises(ValueError):
        write_zip(tmp_path / "x.zip", [("a.jpg", jpg), ("a.jpg", jpg)])


def test_write_zip_missing_member_leaves_no_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_zip(tmp_path / "x.zip", [("gone.jpg", tmp_path / "gone.jpg")])
    assert list(tmp_path.iterdir()) == []


# --- make_thumbnails: every size from one decode ---------------------------------------------------

ODD_SIZES = [(16, 16), (100, 33), (128, 128), (333, 77), (640, 640), (1000, 1000)]


@pytest.mark.parametrize("fmt, size", [("JPEG", (1001, 667)), ("PNG", (999, 101)), ("WEBP", (77, 770))])
def test_make_thumbnails_writes_what_pillows_thumbnail_would_for_every_size(tmp_path, fmt, size):
    from basic.core.images import make_thumbnails

    source = save(tmp_path / f"source.{fmt.lower()}", size=size, fmt=fmt)
    dests = [tmp_path / f"out-{w}x{h}.{fmt.lower()}" for w, h in ODD_SIZES]
    written = list(make_thumbnails(source, ODD_SIZES, dests, max_pixels=25_000_000))
    for box, dest, got in zip(ODD_SIZES, dests, written, strict=True):
        with Image.open(source) as reference:
            reference.thumbnail(box)
            assert got == reference.size, box
        with Image.open(dest) as image:
            assert image.size == got and image.format == fmt


def test_make_thumbnails_decodes_the_source_once(tmp_path, monkeypatch):
    """A 49-megapixel PNG with 8 sizes was decoded 8 times (issue 20: 18 s of a worker, 560 MB)."""
    from basic.core import images

    source = save(tmp_path / "big.png", size=(1200, 900), fmt="PNG")
    from PIL import ImageFile

    decodes = []  # load() calls that still have tiles to decode, i.e. real decodes
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda self: (decodes.append(self.size) if self.tile else None) or real_load(self))
    opened = []
    real_open = images._open_header
    monkeypatch.setattr(images, "_open_header", lambda fh, limit: opened.append(1) or real_open(fh, limit))
    boxes = [(64, 64), (128, 128), (256, 256), (512, 512)]
    dests = [tmp_path / f"t{n}.png" for n in range(len(boxes))]
    assert len(list(images.make_thumbnails(source, boxes, dests, max_pixels=25_000_000))) == 4
    assert len(opened) == 1
    assert decodes == [(1200, 900)]


def test_make_thumbnails_rotates_each_size_by_the_exif_orientation(tmp_path):
    from basic.core.images import make_thumbnails

    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    source = tmp_path / "rotated.jpg"
    Image.new("RGB", (400, 200), (10, 200, 10)).save(source, format="JPEG", exif=exif)
    dests = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    assert list(make_thumbnails(source, [(100, 100), (50, 300)], dests, max_pixels=10**6)) == [(50, 100), (50, 100)]


def test_the_upload_check_decodes_at_most_two_megapixels(tmp_path, monkeypatch):
    """It runs in the web process, on the thread every sync view shares (trap 10): a whole
    49-megapixel PNG cost it a second. Big PNGs are only verified (structure and CRCs; a truncated
    one is still refused), big JPEGs decoded at a reduced scale."""
    from PIL import ImageFile

    decodes = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda self: (decodes.append(self.size) if self.tile else None) or real_load(self))
    big_png = save(tmp_path / "big.png", size=(3000, 3000), fmt="PNG")
    big_jpeg = save(tmp_path / "big.jpg", size=(4000, 3000), fmt="JPEG")
    small = save(tmp_path / "small.png", size=(1000, 1000), fmt="PNG")
    for path in (big_png, big_jpeg, small):
        inspect_image(path, **LIMITS)
    assert decodes[0] == (1000, 750) and decodes[1:] == [(1000, 1000)]  # the JPEG at 1/4; the PNG not at all
    cut = tmp_path / "cut.png"
    cut.write_bytes(big_png.read_bytes()[: big_png.stat().st_size // 2])
    with pytest.raises(ImageRejected, match="damaged or truncated"):
        inspect_image(cut, **LIMITS)
