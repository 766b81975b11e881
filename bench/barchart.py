"""A horizontal grouped bar chart written as a PNG with the standard library only
(zlib for the image data, a 5x7 bitmap font drawn here for the labels). The
bench uses it when matplotlib cannot be imported."""
import struct
import zlib

# 5x7 glyphs, one string of 5 bits per row, top row first. Lower case is drawn
# as upper case.
GLYPHS = {
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11110 10001 10001 10001 10001 10001 11110",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "/": "00001 00010 00010 00100 01000 01000 10000",
    "=": "00000 00000 11111 00000 11111 00000 00000",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    "%": "11000 11001 00010 00100 01000 10011 00011",
    ">": "01000 00100 00010 00001 00010 00100 01000",
    "<": "00010 00100 01000 10000 01000 00100 00010",
    "_": "00000 00000 00000 00000 00000 00000 11111",
    "'": "00100 00100 01000 00000 00000 00000 00000",
    ";": "00000 01100 01100 00000 01100 00100 01000",
    "?": "01110 10001 00001 00010 00100 00000 00100",
}

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (200, 200, 200)


class Canvas:
    def __init__(self, width, height):
        self.w, self.h = width, height
        self.px = bytearray(bytes(WHITE) * (width * height))

    def rect(self, x0, y0, x1, y1, color):
        x0, x1 = max(0, int(x0)), min(self.w, int(x1))
        row = bytes(color) * max(0, x1 - x0)
        for y in range(max(0, int(y0)), min(self.h, int(y1))):
            i = (y * self.w + x0) * 3
            self.px[i:i + len(row)] = row

    def text(self, x, y, s, color=BLACK, scale=2):
        """Draw s with its top-left corner at (x, y); returns the width drawn."""
        for k, ch in enumerate(s.upper()):
            rows = GLYPHS.get(ch, GLYPHS["?"]).split()
            cx = x + k * 6 * scale
            for ry, bits in enumerate(rows):
                for rx, bit in enumerate(bits):
                    if bit == "1":
                        self.rect(cx + rx * scale, y + ry * scale,
                                  cx + (rx + 1) * scale, y + (ry + 1) * scale, color)
        return text_width(s, scale)

    def png(self):
        raw = b"".join(b"\0" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3])
                       for y in range(self.h))

        def chunk(kind, data):
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))

        return (b"\x89PNG\r\n\x1a\n"
                + chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9))
                + chunk(b"IEND", b""))


def text_width(s, scale=2):
    return len(s) * 6 * scale


def bar_chart(path, title, subtitle, rows, series, limit_label="1.0 = the limit"):
    """Write a PNG: one group of bars per row.

    rows:   [(label, [value or None per series], note or "")]
    series: [(name, (r, g, b))]
    A value of None is drawn as "n/a"; a dashed line marks 1.0."""
    label_w = max(text_width(r[0]) for r in rows) + 30
    plot_w, bar_h, gap = 520, 14, 14
    group_h = bar_h * len(series) + gap
    top, bottom = 104, 50
    note_w = max([text_width(r[2], 1) for r in rows] + [0])
    width = max(label_w + plot_w + 44 + note_w, text_width(subtitle, 1) + 40, text_width(title) + 40)
    height = top + group_h * len(rows) + bottom
    c = Canvas(width, height)
    c.text(20, 14, title, scale=2)
    c.text(20, 40, subtitle, color=(60, 60, 60), scale=1)
    lx = 20
    for name, color in series:
        c.rect(lx, 62, lx + 18, 76, color)
        lx += 26 + c.text(lx + 26, 62, name) + 30
    c.text(lx, 62, "(" + limit_label + ")", color=(90, 90, 90))

    values = [v for _, vs, _ in rows for v in vs if v is not None]
    vmax = max([1.0] + values) * 1.08
    x0 = label_w

    def xof(v):
        return x0 + plot_w * min(v, vmax) / vmax

    for tick in _ticks(vmax):
        c.rect(xof(tick), top - 6, xof(tick) + 1, height - bottom, GREY)
        c.text(xof(tick) - text_width(f"{tick:g}", 1) // 2, height - bottom + 8, f"{tick:g}", scale=1)
    for y in range(top - 6, height - bottom, 8):
        c.rect(xof(1.0) - 1, y, xof(1.0) + 2, y + 5, (200, 0, 0))

    for i, (label, vals, note) in enumerate(rows):
        gy = top + i * group_h
        c.text(20, gy + (group_h - gap) // 2 - 7, label)
        for j, ((_, color), v) in enumerate(zip(series, vals)):
            y = gy + j * bar_h
            if v is None:
                c.text(x0 + 4, y + 3, "n/a", color=(120, 120, 120), scale=1)
                continue
            c.rect(x0, y, max(x0 + 1, xof(v)), y + bar_h - 2, color)
            c.rect(xof(v) + 2, y + 1, xof(v) + 6 + text_width(f"{v:.2f}", 1), y + bar_h - 3, WHITE)
            c.text(xof(v) + 4, y + 3, f"{v:.2f}", scale=1)
        if note:
            c.text(x0 + plot_w + 24, gy + (group_h - gap) // 2 - 4, note, color=(60, 60, 60), scale=1)
    c.rect(x0, top - 6, x0 + 1, height - bottom, BLACK)
    with open(path, "wb") as f:
        f.write(c.png())


def _ticks(vmax):
    step = 0.25 if vmax <= 1.5 else 0.5 if vmax <= 3 else 1.0 if vmax <= 6 else round(vmax / 6)
    t, out = 0.0, []
    while t <= vmax:
        out.append(round(t, 2))
        t += step
    return out
