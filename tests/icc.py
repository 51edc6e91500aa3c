"""A minimal ICC v2 RGB profile (a matrix and gamma curves), written byte by byte, for the tests of colour
management: Pillow makes only sRGB, LAB and XYZ profiles, and a test needs an RGB space other than sRGB (ICC.1:2001-04:
the header of section 6.1, the tag table of 6.2, the tag types desc, XYZ, curv and text of section 6.5)."""
import struct

# Adobe RGB (1998)'s primaries adapted to D50 (its published colorants)
ADOBE = [(0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446)]
D50 = (0.9642, 1.0, 0.8249)


def s15(x: float) -> bytes:
    """An s15Fixed16Number."""
    return struct.pack(">i", round(x * 65536))


def xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)


def curv(gamma: float) -> bytes:
    return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def desc(text: str) -> bytes:
    a = text.encode() + b"\0"
    unicode_and_script = struct.pack(">II", 0, 0) + struct.pack(">HB", 0, 0) + b"\0" * 67
    return b"desc" + b"\0" * 4 + struct.pack(">I", len(a)) + a + unicode_and_script


def icc_rgb(primaries=ADOBE, gamma: float = 2.2) -> bytes:
    """The bytes of a display RGB profile with these D50 colorants and one gamma for the three channels."""
    tags = [(b"desc", desc("test RGB")), (b"wtpt", xyz(*D50)),
            (b"rXYZ", xyz(*primaries[0])), (b"gXYZ", xyz(*primaries[1])), (b"bXYZ", xyz(*primaries[2])),
            (b"rTRC", curv(gamma)), (b"gTRC", curv(gamma)), (b"bTRC", curv(gamma)),
            (b"cprt", b"text" + b"\0" * 4 + b"none\0")]
    table_len = 4 + 12 * len(tags)
    offset, entries, data = 128 + table_len, b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        entries += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = 128 + table_len + len(data)
    header = struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + b"\0" * 12
    header += b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + s15(D50[0]) + s15(D50[1]) + s15(D50[2]) + b"\0" * 4
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + entries + data
