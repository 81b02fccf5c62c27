"""Draw the synthetic sample photo `hillside.jpg` (no real person, no real place).

A landscape with a sky gradient, a sun, layered hills and a house gives the motion models edges
and depth to move over. Needs Pillow: `python3 -m pip install pillow`.
"""

import math
import os

from PIL import Image, ImageDraw, ImageFilter

W, H = 640, 480


def main() -> None:
    img = Image.new("RGB", (W, H))
    px = img.load()
    for y in range(H):  # sky: deep blue to warm horizon
        t = y / H
        for x in range(W):
            px[x, y] = (int(40 + 200 * t), int(90 + 120 * t), int(200 - 60 * t))
    draw = ImageDraw.Draw(img)
    draw.ellipse((440, 60, 540, 160), fill=(255, 230, 150))
    for i, (base, amp, color) in enumerate(
        [(300, 40, (70, 120, 80)), (350, 30, (50, 100, 60)), (400, 25, (35, 80, 45))]
    ):
        points = [(0, H)]
        for x in range(0, W + 1, 8):
            points.append((x, base + amp * math.sin(x / (70 + 30 * i) + i)))
        points.append((W, H))
        draw.polygon(points, fill=color)
    draw.rectangle((150, 300, 250, 380), fill=(200, 180, 150))
    draw.polygon([(140, 300), (200, 250), (260, 300)], fill=(150, 60, 50))
    draw.rectangle((190, 340, 215, 380), fill=(90, 60, 40))
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hillside.jpg")
    img.save(out, quality=88)
    print(out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
