"""Draw the extension's icons (stdlib only): python3 extension/tools/make_icons.py

A blue rounded square with a white sync ring (two arcs with arrow heads).
"""
import math
import struct
import zlib
from pathlib import Path

BLUE = (10, 102, 194)
WHITE = (255, 255, 255)


def inside_icon(x: float, y: float) -> tuple[int, int, int] | None:
    # unit coordinates in [0, 1]
    r = 0.2  # corner radius
    cx, cy = min(max(x, r), 1 - r), min(max(y, r), 1 - r)
    if (x - cx) ** 2 + (y - cy) ** 2 > r * r:
        return None
    dx, dy = x - 0.5, y - 0.5
    dist = math.hypot(dx, dy)
    ang = math.degrees(math.atan2(dy, dx)) % 360
    ring = 0.22 <= dist <= 0.31
    gap = (ang % 180) < 25  # two gaps → two arcs
    if ring and not gap:
        return WHITE
    # arrow heads at the start of each arc
    for base in (25, 205):
        a = math.radians(base)
        hx, hy = 0.5 + 0.265 * math.cos(a), 0.5 + 0.265 * math.sin(a)
        tx, ty = -math.sin(a), math.cos(a)  # tangent, direction of travel reversed
        px, py = x - hx, y - hy
        along = -(px * tx + py * ty)
        across = abs(px * math.cos(a) + py * math.sin(a))
        if 0 <= along <= 0.14 and across <= 0.13 * (1 - along / 0.14):
            return WHITE
    return BLUE


def render(size: int, ss: int = 4) -> bytes:
    rows = []
    for j in range(size):
        row = bytearray([0])
        for i in range(size):
            acc = [0, 0, 0, 0]
            for sj in range(ss):
                for si in range(ss):
                    c = inside_icon((i + (si + 0.5) / ss) / size, (j + (sj + 0.5) / ss) / size)
                    if c:
                        acc[0] += c[0]; acc[1] += c[1]; acc[2] += c[2]; acc[3] += 255
            n = ss * ss
            alpha = acc[3] / n
            if alpha:
                scale = 255 / acc[3]  # un-premultiply: average colour of the covered samples
                row += bytes([min(255, round(acc[0] * scale)), min(255, round(acc[1] * scale)),
                              min(255, round(acc[2] * scale)), round(alpha)])
            else:
                row += bytes([0, 0, 0, 0])
        rows.append(bytes(row))
    raw = b"".join(rows)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "icons"
    out.mkdir(exist_ok=True)
    for size in (16, 32, 48, 128):
        (out / f"icon-{size}.png").write_bytes(render(size))
        print(out / f"icon-{size}.png")
