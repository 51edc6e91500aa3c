"""Procedural rendering of one pedestrian image with its teacher annotations.

A person is drawn from an *identity* (clothing, body, accessories: :func:`random_identity`), a
*camera* (background, light, colour cast, viewpoint habits, optics: :func:`random_camera`) and a
per-image walking pose. The renderer draws two label maps in z-order with Pillow -- a *material* map
(skin, hair, upper clothes, ...) that is then coloured and textured, and the *part-parsing* map that
is written as the teacher annotation -- so mask, parsing and keypoints agree with the pixels exactly.

Parsing labels (``PARTS``): 0 background, 1 head (face, hair, hat), 2 torso (upper clothes), 3 arms,
4 legs (lower clothes and bare legs), 5 feet, 6 bag/accessory.

Keypoints: the 17 COCO keypoints in COCO order, ``(x, y, v)`` in pixels of the saved image, with
v = 2 visible, v = 1 inside the image but hidden (far side of the body, back of the head, an
occluder), v = 0 outside the image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..annotations import COCO_KEYPOINTS  # noqa: F401  (the keypoints' order, re-exported)

PARTS = ("background", "head", "torso", "arms", "legs", "feet", "bag")

# Materials of the material map (0 is background).
SKIN, HAIR, HAT, UPPER, LOWER, SHOES, BAG, LOGO, EYE, STRAP, PRINT = range(1, 12)

PALETTE = np.array([
    (200, 30, 30), (30, 60, 180), (40, 140, 60), (230, 200, 40), (240, 240, 235), (25, 25, 28),
    (120, 120, 125), (130, 70, 30), (230, 120, 30), (120, 40, 150), (230, 130, 170), (40, 170, 180),
    (100, 20, 30), (20, 30, 80), (190, 170, 130), (90, 110, 40),
], dtype=np.float32)
# The look-alike switch (``hard`` "lookalike"): clothing from the colours real crowds wear, shared by many
# persons -- indices into PALETTE: near-black, navy, grey, white, brown, beige, dark red, olive -- with denim
# (a blue at 40% of PALETTE's saturation) appended as the last entry of REAL_PALETTE.
REAL_COLOURS = (5, 13, 6, 4, 7, 14, 12, 15)
DENIM = np.array([(62, 84, 120)], dtype=np.float32)
REAL_PALETTE = np.concatenate([PALETTE[list(REAL_COLOURS)], DENIM])
SKIN_TONES = np.array([(245, 210, 180), (225, 180, 140), (190, 140, 100), (150, 100, 70),
                       (100, 65, 45)], dtype=np.float32)
HAIR_COLOURS = np.array([(20, 15, 10), (70, 40, 20), (140, 90, 40), (210, 180, 110), (150, 150, 150),
                         (160, 50, 20)], dtype=np.float32)
UPPER_PATTERNS = ("solid", "hstripes", "vstripes", "checker", "twotone")
LOWER_TYPES = ("trousers", "shorts", "skirt")
BAG_TYPES = (None, "backpack", "shoulder", "handbag")
VIEWS = ("front", "back", "side")
# Identity attributes a look-alike may differ in (one or two of them).
MUTABLE = ("upper_colour", "upper_pattern", "upper_colour2", "lower_colour", "lower_type", "bag",
           "hat", "hair_colour", "shoes", "logo", "sleeves")


@dataclass
class Identity:
    height: float          # fraction of the image height the person spans (before camera scale)
    width: float           # body width multiplier
    skin: int
    hair_colour: int
    long_hair: bool
    hat: int | None        # palette index or None
    upper_colour: int
    upper_colour2: int
    upper_pattern: str
    sleeves: str           # "long" | "short"
    logo: int | None
    lower_colour: int
    lower_type: str
    shoes: int
    bag: str | None
    bag_colour: int
    back_print: int | None = None   # a print on the back of the upper clothes (seen from behind only)
    realistic: bool = False         # clothing colours index REAL_PALETTE (the look-alike switch), not PALETTE

    def mutate(self, rng: np.random.Generator, n: int) -> "Identity":
        """A look-alike: the same person but for ``n`` attributes."""
        new = Identity(**self.__dict__)
        clothes = len(REAL_PALETTE) if self.realistic else len(PALETTE)
        for attr in rng.choice(MUTABLE, size=n, replace=False):
            if attr == "upper_colour":
                new.upper_colour = _other(rng, clothes, self.upper_colour)
            elif attr == "upper_colour2":
                new.upper_colour2 = _other(rng, clothes, self.upper_colour2)
                if new.upper_pattern == "solid":
                    new.upper_pattern = str(rng.choice(UPPER_PATTERNS[1:]))
            elif attr == "upper_pattern":
                new.upper_pattern = str(rng.choice([p for p in UPPER_PATTERNS if p != self.upper_pattern]))
            elif attr == "lower_colour":
                new.lower_colour = _other(rng, clothes, self.lower_colour)
            elif attr == "lower_type":
                new.lower_type = str(rng.choice([t for t in LOWER_TYPES if t != self.lower_type]))
            elif attr == "bag":
                choices = [b for b in BAG_TYPES if b != self.bag]
                new.bag = choices[int(rng.integers(len(choices)))]
            elif attr == "hat":
                new.hat = None if self.hat is not None else int(rng.integers(len(PALETTE)))
            elif attr == "hair_colour":
                new.hair_colour = _other(rng, len(HAIR_COLOURS), self.hair_colour)
            elif attr == "shoes":
                new.shoes = _other(rng, len(PALETTE), self.shoes)
            elif attr == "logo":
                new.logo = None if self.logo is not None else int(rng.integers(len(PALETTE)))
            elif attr == "sleeves":
                new.sleeves = "short" if self.sleeves == "long" else "long"
        return new


def _other(rng: np.random.Generator, n: int, current: int) -> int:
    return int((current + 1 + rng.integers(n - 1)) % n)


def random_identity(rng: np.random.Generator, realistic: bool = False, prints: bool = False) -> Identity:
    """A random person. ``realistic`` (the look-alike switch): upper and lower clothes from REAL_PALETTE, mostly
    plain, so that clothing colour is shared by many and identity lies in details (bag, shoes, logo, hair,
    build); ``prints`` (the viewpoint switch): more logos (front only) and prints on the back (back only)."""
    if realistic:
        return _realistic_identity(rng, prints)
    upper, upper2 = rng.choice(len(PALETTE), size=2, replace=False)
    ident = Identity(
        height=float(rng.uniform(0.86, 0.96)), width=float(rng.uniform(0.85, 1.2)),
        skin=int(rng.integers(len(SKIN_TONES))), hair_colour=int(rng.integers(len(HAIR_COLOURS))),
        long_hair=bool(rng.random() < 0.35),
        hat=int(rng.integers(len(PALETTE))) if rng.random() < 0.2 else None,
        upper_colour=int(upper), upper_colour2=int(upper2),
        upper_pattern=str(rng.choice(UPPER_PATTERNS, p=[0.4, 0.15, 0.15, 0.15, 0.15])),
        sleeves="long" if rng.random() < 0.5 else "short",
        logo=int(rng.integers(len(PALETTE))) if rng.random() < 0.3 else None,
        lower_colour=int(rng.integers(len(PALETTE))),
        lower_type=str(rng.choice(LOWER_TYPES, p=[0.6, 0.25, 0.15])),
        shoes=int(rng.integers(len(PALETTE))),
        bag=BAG_TYPES[int(rng.choice(4, p=[0.4, 0.25, 0.2, 0.15]))],
        bag_colour=int(rng.integers(len(PALETTE))),
    )
    if prints:
        _add_prints(ident, rng)
    return ident


def _add_prints(ident: Identity, rng: np.random.Generator) -> None:
    """The viewpoint switch's details: a logo (drawn in the front view only) on 60% of persons, a back print
    (back view only) on 50%."""
    ident.logo = int(rng.integers(len(PALETTE))) if rng.random() < 0.6 else None
    ident.back_print = int(rng.integers(len(PALETTE))) if rng.random() < 0.5 else None


def _realistic_identity(rng: np.random.Generator, prints: bool) -> Identity:
    # dark and denim dominate, as in street crowds; REAL_PALETTE's last entry is denim
    weights = np.array([0.22, 0.14, 0.14, 0.09, 0.08, 0.06, 0.04, 0.04, 0.19])
    upper, upper2 = rng.choice(len(REAL_PALETTE), size=2, replace=False, p=weights)
    ident = Identity(
        height=float(rng.uniform(0.84, 0.98)), width=float(rng.uniform(0.8, 1.25)),
        skin=int(rng.integers(len(SKIN_TONES))), hair_colour=int(rng.integers(len(HAIR_COLOURS))),
        long_hair=bool(rng.random() < 0.35),
        hat=int(rng.integers(len(PALETTE))) if rng.random() < 0.15 else None,
        upper_colour=int(upper), upper_colour2=int(upper2),
        upper_pattern=str(rng.choice(UPPER_PATTERNS, p=[0.7, 0.075, 0.075, 0.075, 0.075])),
        sleeves="long" if rng.random() < 0.5 else "short",
        logo=int(rng.integers(len(PALETTE))) if rng.random() < 0.3 else None,
        lower_colour=int(rng.choice(len(REAL_PALETTE), p=weights)),
        lower_type=str(rng.choice(LOWER_TYPES, p=[0.7, 0.2, 0.1])),
        shoes=int(rng.integers(len(PALETTE))),
        bag=BAG_TYPES[int(rng.choice(4, p=[0.4, 0.25, 0.2, 0.15]))],
        bag_colour=int(rng.integers(len(PALETTE))), realistic=True,
    )
    if prints:
        _add_prints(ident, rng)
    return ident


@dataclass
class Camera:
    background: np.ndarray        # H2 x W2 x 3 float32 scene, larger than an image; crops vary
    brightness: float
    cast: np.ndarray              # per-channel gain
    view_probs: np.ndarray        # probabilities of front / back / side
    scale: float
    blur: float
    noise: float
    jpeg_quality: int
    light_slope: float = 0.0      # vertical illumination gradient
    extra: dict = field(default_factory=dict)


def random_camera(rng: np.random.Generator, height: int, width: int, hard: bool = False) -> Camera:
    """One camera: its scene, light and optics, and which way people usually face it. ``hard`` (the camera
    switch): draws after the usual ones (so that a camera without it is unchanged) a sensor resolution (the
    image is taken at 35-100% of its size and scaled back up), a per-channel response curve (gamma 0.75-1.3),
    a stronger colour cast, blur and noise, and a cluttered scene (poles, signs and person-sized blobs)."""
    bh, bw = int(height * 1.3), int(width * 2.0)
    # muted scenes (half grey) so that people, not backgrounds, carry most of the colour
    grey = np.float32(rng.uniform(90, 170))
    base = 0.7 * grey + 0.3 * rng.uniform(60, 200, size=3).astype(np.float32)
    ground = 0.7 * grey + 0.3 * rng.uniform(60, 170, size=3).astype(np.float32)
    yy = np.linspace(0, 1, bh, dtype=np.float32)[:, None, None]
    horizon = rng.uniform(0.55, 0.8)
    scene = np.where(yy < horizon, base * (0.8 + 0.3 * yy), ground * (0.9 + 0.2 * yy))
    scene = np.broadcast_to(scene, (bh, bw, 3)).copy()
    # Facades, windows, posts: rectangles in muted colours, so the background has structure.
    for _ in range(int(rng.integers(6, 14))):
        x0, y0 = int(rng.integers(0, bw)), int(rng.integers(0, int(bh * horizon)))
        w, h = int(rng.integers(bw // 20 + 1, bw // 4)), int(rng.integers(bh // 20 + 1, bh // 3))
        patch = 0.6 * grey + 0.4 * rng.uniform(40, 220, 3)
        scene[y0:y0 + h, x0:x0 + w] = scene[y0:y0 + h, x0:x0 + w] * 0.5 + patch * 0.5
    scene += rng.normal(0, 6, size=scene.shape).astype(np.float32)
    view = rng.dirichlet([2.0, 2.0, 1.2])
    cam = Camera(
        background=np.clip(scene, 0, 255), brightness=float(rng.uniform(0.8, 1.1)),
        cast=rng.uniform(0.9, 1.1, size=3).astype(np.float32), view_probs=view,
        scale=float(rng.uniform(0.88, 1.0)), blur=float(rng.uniform(0.0, 0.9)) * height / 128,
        noise=float(rng.uniform(2, 8)), jpeg_quality=int(rng.integers(70, 96)),
        light_slope=float(rng.uniform(-0.2, 0.2)),
    )
    if hard:
        cam.cast = rng.uniform(0.78, 1.22, size=3).astype(np.float32)
        cam.blur = float(rng.uniform(0.0, 1.6)) * height / 128
        cam.noise = float(rng.uniform(3, 14))
        cam.jpeg_quality = int(rng.integers(45, 90))
        cam.extra = {"resolution": float(rng.uniform(0.35, 1.0)),
                     "gamma": rng.uniform(0.75, 1.3, size=3).astype(np.float32)}
        bg = cam.background
        for _ in range(int(rng.integers(8, 16))):          # clutter: poles, signs, person-sized blobs
            x0, y0 = int(rng.integers(0, bw)), int(rng.integers(0, bh))
            w = int(rng.integers(2, max(3, bw // 10)))
            hgt = int(rng.integers(bh // 6, bh // 2)) if rng.random() < 0.6 else int(rng.integers(bh // 12, bh // 5))
            bg[y0:y0 + hgt, x0:x0 + w] = rng.uniform(20, 235, size=3).astype(np.float32)
        cam.background = np.clip(bg, 0, 255)
    return cam


class _Canvas:
    """Draws each shape on the material map and the parsing map at once."""

    def __init__(self, height: int, width: int):
        self.material = Image.new("L", (width, height), 0)
        self.parsing = Image.new("L", (width, height), 0)
        self._dm, self._dp = ImageDraw.Draw(self.material), ImageDraw.Draw(self.parsing)

    def polygon(self, pts, material: int, part: int):
        pts = [tuple(map(float, p)) for p in pts]
        self._dm.polygon(pts, fill=material)
        self._dp.polygon(pts, fill=part)

    def ellipse(self, box, material: int, part: int):
        self._dm.ellipse(box, fill=material)
        self._dp.ellipse(box, fill=part)

    def limb(self, a, b, width: float, material: int, part: int):
        """A thick segment with round ends."""
        w = max(1, int(round(width)))
        self._dm.line([tuple(a), tuple(b)], fill=material, width=w)
        self._dp.line([tuple(a), tuple(b)], fill=part, width=w)
        r = width / 2
        for p in (a, b):
            self.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], material, part)


def _skeleton(ident: Identity, view: str, phase: float, cx: float, top: float, h: float) -> dict:
    """Joint positions of a walking person (pixels). Front view: the person's left is image right."""
    ws = ident.width
    side = view == "side"
    sw = (0.11 if side else 0.17) * h * ws       # half shoulder width
    hw = (0.075 if side else 0.095) * h * ws     # half hip width
    y_sh, y_hip, y_knee, y_ank = top + 0.18 * h, top + 0.52 * h, top + 0.73 * h, top + 0.95 * h
    leg_len1, leg_len2 = y_knee - y_hip, y_ank - y_knee
    arm1, arm2 = 0.16 * h, 0.15 * h
    swing = math.sin(phase)
    # In the side view the swing is horizontal; front/back views foreshorten it into small x offsets.
    amp_leg, amp_arm = (0.45, 0.5) if side else (0.08, 0.12)
    j = {}
    # sign: +1 = the person's left side is at image right (front view), -1 back view
    sgn = {"front": 1.0, "back": -1.0, "side": 1.0}[view]
    for name, s, ph in (("left", sgn, 1.0), ("right", -sgn, -1.0)):
        shx = cx + s * sw if not side else cx + 0.02 * h * s
        hipx = cx + s * hw if not side else cx + 0.01 * h * s
        a_leg = amp_leg * swing * ph
        kx, ky = hipx + leg_len1 * math.sin(a_leg), y_hip + leg_len1 * math.cos(a_leg)
        a_shin = a_leg - (0.25 * max(0.0, -swing * ph) if side else 0.0)
        ax, ay = kx + leg_len2 * math.sin(a_shin), ky + leg_len2 * math.cos(a_shin)
        a_arm = -amp_arm * swing * ph
        spread = 0.0 if side else 0.12 * s
        ex, ey = shx + arm1 * math.sin(a_arm + spread), y_sh + arm1 * math.cos(a_arm + spread)
        wx, wy = ex + arm2 * math.sin(a_arm * 1.3 + spread), ey + arm2 * math.cos(a_arm * 1.3 + spread)
        j[name] = dict(shoulder=(shx, y_sh), hip=(hipx, y_hip), knee=(kx, ky), ankle=(ax, ay),
                       elbow=(ex, ey), wrist=(wx, wy))
    head_r = 0.065 * h
    j["head"] = (cx + (0.02 * h if side else 0.0), top + head_r)
    j["head_r"] = head_r
    return j


def render_person(ident: Identity, cam: Camera, rng: np.random.Generator, height: int, width: int,
                  view: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one image. Returns (image H x W x 3 float32 before camera optics, parsing H x W uint8,
    keypoints 17 x 3 float32)."""
    view = view or VIEWS[int(rng.choice(3, p=cam.view_probs))]
    h = ident.height * cam.scale * height * rng.uniform(0.95, 1.03)
    cx = width / 2 + rng.normal(0, 0.05) * width
    top = (height - h) * rng.uniform(0.2, 0.8)
    phase = rng.uniform(0, 2 * math.pi)
    j = _skeleton(ident, view, phase, cx, top, h)
    cv = _Canvas(height, width)
    limb_w, arm_w = 0.11 * h * ident.width, 0.075 * h * ident.width
    near, far = ("left", "right") if view != "back" else ("right", "left")
    if view == "side":
        near, far = "left", "right"
    bag_behind = (ident.bag == "backpack" and view != "back")

    def draw_leg(side_name: str):
        L = j[side_name]
        upper_mat = LOWER
        lower_mat = LOWER if ident.lower_type == "trousers" else SKIN
        cv.limb(L["hip"], L["knee"], limb_w, upper_mat if ident.lower_type != "skirt" else SKIN, 4)
        cv.limb(L["knee"], L["ankle"], limb_w * 0.85, lower_mat, 4)
        fx = 0.05 * h if view == "side" else 0.0
        ax, ay = L["ankle"]
        cv.ellipse([ax - 0.04 * h, ay - 0.02 * h, ax + 0.04 * h + fx, ay + 0.03 * h], SHOES, 5)

    def draw_arm(side_name: str):
        A = j[side_name]
        cv.limb(A["shoulder"], A["elbow"], arm_w, UPPER, 3)  # sleeves always cover the upper arm
        cv.limb(A["elbow"], A["wrist"], arm_w * 0.85, UPPER if ident.sleeves == "long" else SKIN, 3)
        wx, wy = A["wrist"]
        cv.ellipse([wx - arm_w * 0.5, wy - arm_w * 0.3, wx + arm_w * 0.5, wy + arm_w * 0.7], SKIN, 3)

    # z-order: far limbs, bag behind, legs, torso, skirt, near arm, head, accessories in front
    if view == "side":
        draw_arm(far)
        draw_leg(far)
    if bag_behind and view == "side":
        x0, y0 = j["left"]["shoulder"][0] - 0.16 * h, j["left"]["shoulder"][1] + 0.01 * h
        cv.polygon([(x0, y0), (x0 + 0.1 * h, y0), (x0 + 0.1 * h, y0 + 0.24 * h), (x0, y0 + 0.24 * h)], BAG, 6)
    for s in ((near,) if view == "side" else (far, near)):
        draw_leg(s)
    ls, rs, lh, rh = j["left"]["shoulder"], j["right"]["shoulder"], j["left"]["hip"], j["right"]["hip"]
    if view == "side":
        torso = [(cx - 0.06 * h * ident.width, ls[1]), (cx + 0.07 * h * ident.width, ls[1]),
                 (cx + 0.065 * h * ident.width, lh[1] + 0.02 * h), (cx - 0.06 * h * ident.width, lh[1] + 0.02 * h)]
    else:
        torso = [ls, rs, (rh[0], rh[1] + 0.02 * h), (lh[0], lh[1] + 0.02 * h)]
    cv.polygon(torso, UPPER, 2)
    if ident.lower_type == "skirt":
        yk = top + 0.68 * h
        cv.polygon([(lh[0], lh[1]), (rh[0], rh[1]), (rh[0] + np.sign(rh[0] - cx + 1e-6) * 0.06 * h, yk),
                    (lh[0] + np.sign(lh[0] - cx - 1e-6) * 0.06 * h, yk)], LOWER, 4)
    elif view != "side":
        cv.polygon([(lh[0], lh[1]), (rh[0], rh[1]), (rh[0], rh[1] + 0.05 * h), (lh[0], lh[1] + 0.05 * h)], LOWER, 4)
    if ident.logo is not None and view == "front":
        lx, ly = cx, top + 0.3 * h
        cv.polygon([(lx - 0.04 * h, ly - 0.04 * h), (lx + 0.04 * h, ly - 0.04 * h), (lx, ly + 0.05 * h)], LOGO, 2)
    if ident.back_print is not None and view == "back" and ident.bag != "backpack":
        bx, by = cx, top + 0.32 * h
        cv.polygon([(bx - 0.06 * h, by - 0.05 * h), (bx + 0.06 * h, by - 0.05 * h), (bx + 0.06 * h, by + 0.05 * h),
                    (bx - 0.06 * h, by + 0.05 * h)], PRINT, 2)
    if ident.bag == "backpack" and view == "back":
        x0, x1 = cx - 0.11 * h * ident.width, cx + 0.11 * h * ident.width
        top, bottom = ls[1] + 0.02 * h, ls[1] + 0.28 * h
        cv.polygon([(x0, top), (x1, top), (x1, bottom), (x0, bottom)], BAG, 6)
    elif ident.bag == "backpack" and view == "front":
        for sx in (ls[0], rs[0]):
            x = cx + (sx - cx) * 0.6
            cv.limb((x, ls[1]), (x, ls[1] + 0.2 * h), 0.025 * h, STRAP, 6)
    if view == "side":
        draw_arm(near)
    else:
        draw_arm(far)
        draw_arm(near)
    hx, hy = j["head"]
    r = j["head_r"]
    cv.limb((cx, ls[1] - 0.01 * h), (hx, hy + r * 0.6), 0.05 * h, SKIN, 1)  # neck
    hair_mat = HAIR
    if view == "back":
        cv.ellipse([hx - r, hy - r, hx + r, hy + r * 1.05], hair_mat, 1)
        if ident.long_hair:
            cv.polygon([(hx - r, hy), (hx + r, hy), (hx + r * 0.9, hy + 2.3 * r), (hx - r * 0.9, hy + 2.3 * r)],
                       hair_mat, 1)
    else:
        if ident.long_hair:  # two strands beside the face and neck
            for sx in (-1, 1):
                cv.polygon([(hx + sx * 0.5 * r, hy - 0.2 * r), (hx + sx * 1.1 * r, hy - 0.2 * r),
                            (hx + sx * 1.05 * r, hy + 2.1 * r), (hx + sx * 0.6 * r, hy + 2.1 * r)], hair_mat, 1)
        cv.ellipse([hx - r, hy - r, hx + r, hy + r * 1.1], SKIN, 1)
        cv.polygon([(hx - r * 1.02, hy - 0.1 * r), (hx + r * 1.02, hy - 0.1 * r), (hx + r, hy - 0.6 * r),
                    (hx, hy - 1.05 * r), (hx - r, hy - 0.6 * r)], hair_mat, 1)
        if view == "side":
            cv.ellipse([hx - r * 1.02, hy - r, hx + 0.1 * r, hy + 0.8 * r], hair_mat, 1)
        eye = max(1.0, 0.14 * r)
        for ex in ((hx - 0.38 * r, hx + 0.38 * r) if view == "front" else (hx + 0.55 * r,)):
            cv.ellipse([ex - eye, hy + 0.05 * r - eye, ex + eye, hy + 0.05 * r + eye], EYE, 1)
    if ident.hat is not None:
        cv.polygon([(hx - r * 1.05, hy - 0.35 * r), (hx + r * 1.05, hy - 0.35 * r), (hx + 0.8 * r, hy - 1.15 * r),
                    (hx - 0.8 * r, hy - 1.15 * r)], HAT, 1)
        brim = 0.7 * r if view == "side" else 0.2 * r
        cv.polygon([(hx - r * 1.05, hy - 0.4 * r), (hx + r * 1.05 + brim, hy - 0.4 * r),
                    (hx + r * 1.05 + brim, hy - 0.25 * r), (hx - r * 1.05, hy - 0.25 * r)], HAT, 1)
    if ident.bag == "shoulder":
        side_x = rs[0] if view != "side" else cx - 0.05 * h
        hip_y = lh[1]
        bx = side_x + (0.03 * h if side_x > cx else -0.03 * h)
        cv.limb((ls[0] if view != "side" else cx, ls[1]), (bx, hip_y - 0.05 * h), 0.02 * h, STRAP, 6)
        cv.polygon([(bx - 0.06 * h, hip_y - 0.06 * h), (bx + 0.06 * h, hip_y - 0.06 * h),
                    (bx + 0.06 * h, hip_y + 0.05 * h), (bx - 0.06 * h, hip_y + 0.05 * h)], BAG, 6)
    elif ident.bag == "handbag":
        wx, wy = j[near]["wrist"]
        cv.polygon([(wx - 0.045 * h, wy + 0.01 * h), (wx + 0.045 * h, wy + 0.01 * h), (wx + 0.05 * h, wy + 0.1 * h),
                    (wx - 0.05 * h, wy + 0.1 * h)], BAG, 6)

    material = np.asarray(cv.material)
    parsing = np.asarray(cv.parsing).copy()
    image = _colour(ident, material, h, top, cx, rng)
    keypoints = _keypoints(j, view, height, width)
    return image, parsing, keypoints


def _colour(ident: Identity, material: np.ndarray, h: float, top: float, cx: float,
            rng: np.random.Generator) -> np.ndarray:
    """Paint the material map: colours, clothing patterns and a little cylindrical shading."""
    H, W = material.shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    out = np.zeros((H, W, 3), np.float32)
    clothes = REAL_PALETTE if ident.realistic else PALETTE
    c1, c2 = clothes[ident.upper_colour], clothes[ident.upper_colour2]
    period = max(2.0, 0.05 * h)
    pat = ident.upper_pattern
    if pat == "hstripes":
        sel = ((yy - top) // period) % 2 == 0
    elif pat == "vstripes":
        sel = ((xx - cx) // period) % 2 == 0
    elif pat == "checker":
        sel = (((yy - top) // period + (xx - cx) // period) % 2) == 0
    elif pat == "twotone":
        sel = yy < top + 0.36 * h
    else:
        sel = np.ones((H, W), bool)
    upper = np.where(sel[..., None], c1, c2)
    colours = {
        SKIN: SKIN_TONES[ident.skin], HAIR: HAIR_COLOURS[ident.hair_colour],
        HAT: PALETTE[ident.hat if ident.hat is not None else 0], LOWER: clothes[ident.lower_colour],
        SHOES: PALETTE[ident.shoes], BAG: PALETTE[ident.bag_colour],
        LOGO: PALETTE[ident.logo if ident.logo is not None else 0], EYE: np.array([20, 20, 20], np.float32),
        STRAP: PALETTE[ident.bag_colour] * 0.6,
        PRINT: PALETTE[ident.back_print if ident.back_print is not None else 0],
    }
    for m, c in colours.items():
        out[material == m] = c
    out[material == UPPER] = upper[material == UPPER]
    shade = 0.82 + 0.18 * np.cos(np.clip((xx - cx) / (0.18 * h), -1.5, 1.5))
    out *= shade[..., None]
    out += rng.normal(0, 4, size=3).astype(np.float32)  # per-image dye/light variation
    return out


def _keypoints(j: dict, view: str, height: int, width: int) -> np.ndarray:
    hx, hy = j["head"]
    r = j["head_r"]
    if view == "front":
        face = [(hx, hy + 0.3 * r, 2), (hx + 0.38 * r, hy + 0.05 * r, 2), (hx - 0.38 * r, hy + 0.05 * r, 2),
                (hx + r, hy + 0.1 * r, 2), (hx - r, hy + 0.1 * r, 2)]
    elif view == "back":
        face = [(hx, hy + 0.3 * r, 1), (hx - 0.38 * r, hy + 0.05 * r, 1), (hx + 0.38 * r, hy + 0.05 * r, 1),
                (hx - r, hy + 0.1 * r, 2), (hx + r, hy + 0.1 * r, 2)]
    else:  # side, facing image right, the person's left side towards the camera
        face = [(hx + r, hy + 0.3 * r, 2), (hx + 0.55 * r, hy + 0.05 * r, 2), (hx + 0.5 * r, hy + 0.05 * r, 1),
                (hx - 0.1 * r, hy + 0.1 * r, 2), (hx - 0.1 * r, hy + 0.1 * r, 1)]
    kps = list(face)
    for joint in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
        for s in ("left", "right"):
            v = 1 if (view == "side" and s == "right") else 2
            x, y = j[s][joint]
            kps.append((x, y, v))
    # COCO order interleaves left/right per joint: shoulders, elbows, wrists, hips, knees, ankles.
    arr = np.array(kps, np.float32)
    inside = (arr[:, 0] >= 0) & (arr[:, 0] < width) & (arr[:, 1] >= 0) & (arr[:, 1] < height)
    arr[~inside, 2] = 0
    return arr


def camera_optics(image: np.ndarray, cam: Camera, rng: np.random.Generator) -> Image.Image:
    """Light, colour cast, blur and sensor noise of the camera, applied to a composed image."""
    H, W = image.shape[:2]
    ramp = 1 + cam.light_slope * (np.linspace(-0.5, 0.5, H, dtype=np.float32)[:, None, None])
    gain = cam.brightness * rng.uniform(0.92, 1.08) * cam.cast * ramp
    out = image * gain
    if "gamma" in cam.extra:                               # the camera switch: its colour response
        out = 255 * (np.clip(out, 0, 255) / 255) ** cam.extra["gamma"]
    out += rng.normal(0, cam.noise, size=out.shape).astype(np.float32)
    pil = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    if cam.extra.get("resolution", 1.0) < 0.98:           # taken at a lower resolution, scaled back up
        r = cam.extra["resolution"]
        pil = pil.resize((max(4, round(W * r)), max(4, round(H * r))), Image.BILINEAR).resize((W, H), Image.BILINEAR)
    blur = cam.blur * rng.uniform(0.5, 1.5)
    if blur > 0.25:
        pil = pil.filter(ImageFilter.GaussianBlur(blur))
    return pil


def background_crop(cam: Camera, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    bh, bw, _ = cam.background.shape
    y, x = int(rng.integers(0, bh - height + 1)), int(rng.integers(0, bw - width + 1))
    return cam.background[y:y + height, x:x + width]


def compose(person: np.ndarray, parsing: np.ndarray, background: np.ndarray) -> np.ndarray:
    return np.where((parsing > 0)[..., None], person, background)


def add_occluder(image: np.ndarray, parsing: np.ndarray, keypoints: np.ndarray, rng: np.random.Generator,
                 other: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cover 20-60% of the image with an object (box, car, bush, pole) or another person.

    The target's parsing loses the covered pixels and its covered keypoints become v = 1."""
    H, W = parsing.shape
    frac = rng.uniform(0.2, 0.6)
    cover = np.zeros((H, W), bool)
    kind = rng.choice(["bottom", "side", "person"] if other is not None else ["bottom", "side"])
    colour = rng.uniform(30, 230, size=3).astype(np.float32)
    occ = np.broadcast_to(colour, (H, W, 3)).copy()
    if kind == "bottom":
        y0 = int(round(H * (1 - frac)))
        cover[y0:] = True
        yy = np.arange(H)[:, None]
        occ *= (0.8 + 0.2 * (((yy // max(2, H // 16)) % 2) == 0))[..., None]  # slats / panels
    elif kind == "side":
        wfrac = min(1.0, frac * rng.uniform(1.0, 1.4))
        w = int(round(W * wfrac))
        if rng.random() < 0.5:
            cover[:, :w] = True
        else:
            cover[:, W - w:] = True
        if wfrac < 1.0:
            frac_h = min(1.0, frac / wfrac)
            cover[: int(round(H * (1 - frac_h)))] = False
        occ = occ * (0.85 + 0.15 * rng.random((H, W, 1)).astype(np.float32))
    else:
        person, p_parse = other
        shift = int(round(W * rng.uniform(0.35, 0.6))) * (1 if rng.random() < 0.5 else -1)
        person, p_parse = np.roll(person, shift, axis=1), np.roll(p_parse, shift, axis=1)
        if shift > 0:
            p_parse[:, :shift] = 0
        else:
            p_parse[:, shift:] = 0
        cover = p_parse > 0
        occ = person
    image = np.where(cover[..., None], occ, image)
    parsing = np.where(cover, 0, parsing).astype(np.uint8)
    kps = keypoints.copy()
    xi = np.clip(kps[:, 0].astype(int), 0, W - 1)
    yi = np.clip(kps[:, 1].astype(int), 0, H - 1)
    hidden = cover[yi, xi] & (kps[:, 2] == 2)
    kps[hidden, 2] = 1
    return image, parsing, kps


def detector_crop(person: np.ndarray, parsing: np.ndarray, keypoints: np.ndarray, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """The crops switch: the person as a detector boxes it -- the box loose or tight (scale 0.8-1.3 of the
    person, so a tight box cuts the head or feet), offset by up to 15% of the width and 10% of the height
    (cutting an arm or a side). The person layer, its parsing and its keypoints move by the same map (nearest
    pixel, so the parsing stays exact); keypoints that leave the image become v = 0."""
    H, W = parsing.shape
    s = float(rng.uniform(0.8, 1.3))
    tx = float(rng.uniform(-0.15, 0.15)) * W + (1 - s) * W / 2
    ty = float(rng.uniform(-0.1, 0.1)) * H + (1 - s) * H / 2
    # output pixel (x, y) shows input pixel round((x + 0.5 - tx) / s - 0.5), likewise y
    xs = np.rint((np.arange(W) + 0.5 - tx) / s - 0.5).astype(int)
    ys = np.rint((np.arange(H) + 0.5 - ty) / s - 0.5).astype(int)
    inside = (ys[:, None] >= 0) & (ys[:, None] < H) & (xs[None, :] >= 0) & (xs[None, :] < W)
    yi, xi = np.clip(ys, 0, H - 1)[:, None], np.clip(xs, 0, W - 1)[None, :]
    person = np.where(inside[..., None], person[yi, xi], 0)
    parsing = np.where(inside, parsing[yi, xi], 0).astype(np.uint8)
    kps = keypoints.copy()
    kps[:, 0] = (keypoints[:, 0] + 0.5) * s + tx - 0.5
    kps[:, 1] = (keypoints[:, 1] + 0.5) * s + ty - 0.5
    out = (kps[:, 0] < 0) | (kps[:, 0] >= W) | (kps[:, 1] < 0) | (kps[:, 1] >= H)
    kps[out, 2] = 0
    return person, parsing, kps, {"scale": round(s, 3), "dx": round(tx, 2), "dy": round(ty, 2)}


def crowd(image: np.ndarray, parsing: np.ndarray, keypoints: np.ndarray, other: tuple[np.ndarray, np.ndarray],
          background: np.ndarray, person: np.ndarray, rng: np.random.Generator
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """The crowd switch: a second person partly inside the box, shifted sideways by 30-60% of the width, behind
    the target (its pixels replace background only; the target's parsing is unchanged) or in front of it (the
    target loses the covered pixels from its parsing, and its covered visible keypoints become v = 1)."""
    H, W = parsing.shape
    o_img, o_parse = other
    shift = int(round(W * rng.uniform(0.3, 0.6))) * (1 if rng.random() < 0.5 else -1)
    o_img, o_parse = np.roll(o_img, shift, axis=1), np.roll(o_parse, shift, axis=1).copy()
    if shift > 0:
        o_parse[:, :shift] = 0
    else:
        o_parse[:, shift:] = 0
    front = bool(rng.random() < 0.5)
    if not front:
        scene = compose(o_img, o_parse, background)
        return compose(person, parsing, scene), parsing, keypoints, {"crowd": "behind", "shift": shift}
    cover = o_parse > 0
    image = np.where(cover[..., None], o_img, image)
    kps = keypoints.copy()
    xi = np.clip(kps[:, 0].astype(int), 0, W - 1)
    yi = np.clip(kps[:, 1].astype(int), 0, H - 1)
    kps[cover[yi, xi] & (kps[:, 2] == 2), 2] = 1
    return image, np.where(cover, 0, parsing).astype(np.uint8), kps, {"crowd": "front", "shift": shift}
