"""Images decode to what a person sees (data.images.rgb_image), one file of each kind against hand-made pixels,
and every path that reads images (the stores, extract, search, the Python API, check-data) decodes alike."""
import numpy as np
import pytest
import torch
from PIL import Image

from reidlab.data.images import decode_image, open_rgb, rgb_image
from tests.test_use import trained  # noqa: F401  (the module's trained run)

WHITE = (255, 255, 255)


def kinds(folder):
    """(file, the RGB pixels a viewer shows, as a hand-made H x W x 3 uint8 array) of each kind of file."""
    out = []

    def add(name, im, expected, **save):
        path = folder / name
        im.save(path, **save)
        out.append((path, np.asarray(expected, dtype=np.uint8)))

    ramp = np.arange(8, dtype=np.uint16) * 8481                  # 16-bit gray: 65535 is white
    add("ramp16.png", Image.fromarray(ramp.reshape(1, 8)), [[[v] * 3 for v in range(0, 232, 33)]])
    add("half.tif", Image.fromarray(np.full((2, 2), 0.5, np.float32)), [[[128] * 3] * 2] * 2)      # float, 0..1
    add("float255.tif", Image.fromarray(np.array([[0.0, 100.0]], np.float32)), [[[0] * 3, [100] * 3]])
    rgba = np.array([[[255, 0, 0, 128], [0, 0, 255, 0], [0, 255, 0, 255]]], np.uint8)
    add("alpha.png", Image.fromarray(rgba, "RGBA"), [[[255, 127, 127], WHITE, [0, 255, 0]]])    # over white
    add("gray_alpha.png", Image.fromarray(np.array([[[0, 0], [0, 255], [200, 51]]], np.uint8), "LA"),
        [[WHITE, [0, 0, 0], [244] * 3]])                             # 200 x 0.2 + 255 x 0.8
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putdata([0, 1])
    add("palette_transparent.png", pal, [[WHITE, [200, 100, 50]]], transparency=0)
    add("palette_transparent.gif", pal, [[WHITE, [200, 100, 50]]], transparency=0)
    add("cmyk.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)), [[[255, 0, 0]] * 8] * 8, quality=100)
    add("bilevel.png", Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1"), [[[0] * 3, WHITE]])
    add("gray.png", Image.fromarray(np.array([[7, 250]], np.uint8)), [[[7] * 3, [250] * 3]])
    add("one.png", Image.new("RGB", (1, 1), (1, 2, 3)), [[[1, 2, 3]]])
    # a phone's portrait crop: stored 16 wide x 8 tall (red left, blue right), EXIF orientation 6 (turn it
    # 90 degrees clockwise to view): 8 wide x 16 tall, red above blue
    sideways = Image.new("RGB", (16, 8), (255, 0, 0))
    sideways.paste((0, 0, 255), (8, 0, 16, 8))
    exif = Image.Exif()
    exif[0x0112] = 6
    add("portrait.jpg", sideways, [[[255, 0, 0]] * 8] * 8 + [[[0, 0, 255]] * 8] * 8, exif=exif, quality=100,
        subsampling=0)
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0))]   # animated: the first frame
    add("animated.gif", frames[0], [[[255, 0, 0]] * 4] * 4, save_all=True, append_images=frames[1:], duration=50)
    add("animated.webp", frames[0], [[[255, 0, 0]] * 4] * 4, save_all=True, append_images=frames[1:], duration=50,
        lossless=True)
    return out


def test_each_kind_of_file_decodes_to_the_pixels_a_viewer_shows(tmp_path):
    for path, expected in kinds(tmp_path):
        got = np.asarray(open_rgb(str(path)))
        assert got.shape == expected.shape, path.name
        tolerance = 4 if path.suffix == ".jpg" else 1 if path.suffix == ".webp" else 0
        assert np.abs(got.astype(int) - expected).max() <= tolerance, (path.name, got.tolist())


def test_the_store_decodes_and_resizes_the_same_pixels(tmp_path):
    """The stores read a file at the run's size: the viewer's pixels, resized by the run's filter."""
    for path, expected in kinds(tmp_path):
        if path.suffix == ".jpg":
            continue
        want = np.asarray(Image.fromarray(expected).resize((8, 16), Image.BICUBIC))
        assert np.array_equal(decode_image(str(path), 16, 8, "bicubic"), want), path.name


def test_large_and_lab_images():
    big = Image.new("RGB", (6000, 4000), (9, 8, 7))
    assert np.asarray(rgb_image(big))[0, 0].tolist() == [9, 8, 7]
    assert np.asarray(rgb_image(Image.new("LAB", (1, 1), (128, 128, 128))))[0, 0].tolist() == [119, 119, 119]


def test_every_path_reads_a_file_as_its_viewer_pixels(trained, tmp_path):  # noqa: F811
    """The Python API (paths, PIL images of any mode, numpy arrays), --mode extract and check-data: the features
    of each file equal those of its viewer pixels given as an RGB image."""
    from reidlab import TrainedModel
    model = TrainedModel.load(trained)
    (tmp_path / "kinds").mkdir()
    files = kinds(tmp_path / "kinds")
    from_files = model.extract([str(p) for p, _ in files]).features
    from_pixels = model.extract([Image.fromarray(np.asarray(open_rgb(str(p)))) for p, _ in files]).features
    assert torch.allclose(from_files, from_pixels, atol=1e-5)
    with Image.open(files[3][0]) as rgba:                         # a PIL image in its own mode (RGBA)
        assert torch.allclose(model.extract(rgba).features, from_pixels[3:4], atol=1e-5)
    gray16 = np.arange(8, dtype=np.uint16).reshape(1, 8) * 8481    # a numpy 16-bit gray image
    assert torch.allclose(model.extract(gray16).features, from_pixels[0:1], atol=1e-5)
    folder = model.extract(tmp_path / "kinds")
    assert not folder.skipped and len(folder) == len(files)
    by_name = dict(zip(folder.paths, folder.features))
    for (path, _), f in zip(files, from_pixels):
        assert torch.allclose(by_name[path.name], f, atol=1e-5), path.name


@pytest.mark.parametrize("bad", [np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((4, 4), np.int64)])
def test_numpy_images_that_are_not_images_are_refused(trained, bad):  # noqa: F811
    from reidlab import TrainedModel
    from reidlab.errors import ReIDError
    with pytest.raises(ReIDError, match="numpy image"):
        TrainedModel.load(trained).extract([bad])


def test_an_embedded_colour_profile_is_applied(tmp_path, monkeypatch):
    """A colour-managed viewer shows an image through its embedded profile (littleCMS, to sRGB); a damaged
    profile falls back to the plain pixels. (Pillow makes only sRGB, LAB and XYZ profiles, and none of those
    is another RGB space: the conversion's own numbers are littleCMS's, so the test checks it is used.)"""
    from PIL import ImageCms

    from reidlab.data import images
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("RGB", (4, 4), (90, 120, 60)).save(tmp_path / "srgb.png", icc_profile=srgb)
    used = []
    real = images._to_srgb
    monkeypatch.setattr(images, "_to_srgb", lambda icc, mode: used.append(mode) or real(icc, mode))
    assert np.asarray(open_rgb(str(tmp_path / "srgb.png")))[0, 0].tolist() == [90, 120, 60] and used == ["RGB"]
    Image.new("RGB", (2, 2), (1, 2, 3)).save(tmp_path / "broken.png", icc_profile=b"not a profile")
    assert np.asarray(open_rgb(str(tmp_path / "broken.png")))[0, 0].tolist() == [1, 2, 3]


def test_transparency_keys_profiles_with_alpha_and_premultiplied_gray(tmp_path):
    """A PNG's tRNS colour on gray and RGB reads white (as a viewer shows it); a colour profile applies to RGBA, LA,
    P and PA as to their opaque twins (a phone's Display P3 PNG with alpha); La composites; a float image whose
    few values pass 1 keeps its 0..1 scale."""
    from tests.icc import ADOBE, icc_rgb
    gray = Image.fromarray(np.array([[7, 250]], np.uint8))
    gray.save(tmp_path / "key.png", transparency=7)
    assert np.asarray(open_rgb(str(tmp_path / "key.png"))).tolist() == [[list(WHITE), [250] * 3]]
    rgb = Image.fromarray(np.array([[[255, 0, 0], [1, 2, 3]]], np.uint8))
    rgb.save(tmp_path / "keyrgb.png", transparency=(255, 0, 0))
    assert np.asarray(open_rgb(str(tmp_path / "keyrgb.png"))).tolist() == [[list(WHITE), [1, 2, 3]]]
    icc = icc_rgb(ADOBE)
    colour = (90, 120, 60)
    Image.new("RGB", (2, 2), colour).save(tmp_path / "p3.png", icc_profile=icc)
    managed = np.asarray(open_rgb(str(tmp_path / "p3.png")))
    assert managed[0, 0].tolist() != list(colour)                   # the profile moved the colour
    Image.new("RGBA", (2, 2), colour + (255,)).save(tmp_path / "p3a.png", icc_profile=icc)
    pal = Image.new("RGB", (2, 2), colour).convert("P", palette=Image.ADAPTIVE, colors=4)   # exact colours
    pal.save(tmp_path / "p3p.png", icc_profile=icc)
    pal.save(tmp_path / "p3pt.png", icc_profile=icc, transparency=255)   # an unused index: opaque
    for name in ("p3a.png", "p3p.png", "p3pt.png"):
        assert np.array_equal(np.asarray(open_rgb(str(tmp_path / name))), managed), name
    opaque = np.asarray(rgb_image(Image.open(tmp_path / "p3.png")), int)[0, 0]
    with Image.open(tmp_path / "p3a.png") as im:
        im.load()
        im.putpixel((0, 0), colour + (128,))
        got = np.asarray(rgb_image(im), int)[0, 0]
    assert np.abs(got - (opaque * 128 + 255 * 127) / 255).max() <= 1    # the managed colour, then over white
    la = Image.fromarray(np.array([[[200, 51]]], np.uint8), "LA").convert("La")
    assert np.asarray(rgb_image(la)).tolist() == [[[244] * 3]]          # composited, not an error
    values = np.full((4, 8), 0.5, np.float32)
    values[0, 0] = 1.02                                                  # a resampling's overshoot
    out = np.asarray(rgb_image(Image.fromarray(values)))
    assert out[1, 1].tolist() == [128] * 3 and out[0, 0].tolist() == list(WHITE)


def test_the_api_takes_la_and_refuses_closed_and_empty_pil_images(trained, tmp_path):  # noqa: F811
    from reidlab import TrainedModel
    from reidlab.errors import ReIDError
    model = TrainedModel.load(trained)
    la = Image.fromarray(np.array([[[200, 51]] * 4] * 4, np.uint8), "LA").convert("La")
    gray = Image.fromarray(np.full((4, 4), 244, np.uint8))              # its pixels over white
    assert torch.allclose(model.extract(la).features, model.extract(gray).features, atol=1e-5)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as im:
        pass
    with pytest.raises(ReIDError, match="was closed before its pixels were read"):
        model.extract(im)
    with pytest.raises(ReIDError, match="0 x 0 pixels"):
        model.extract(Image.new("RGB", (0, 0)))
