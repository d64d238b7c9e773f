"""Draws docs/world-framings.png: the same eight scenes (four of a critter,
four of a bot) in every framing, one row per framing, at 96 pixels.

Usage: python3 tools/world_framings_sheet.py [NEST] [OUTPUT]
(defaults: .build/release/nest, docs/world-framings.png). Each row is
`nest world dataset --framings F --size 96` with the same seed, so only the
framing differs between rows."""
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

nest = sys.argv[1] if len(sys.argv) > 1 else ".build/release/nest"
output = Path(sys.argv[2] if len(sys.argv) > 2 else "docs/world-framings.png")
framings = ["scene", "portrait", "half-body", "close-up"]
side, gutter, per_domain = 96, 2, 4

with tempfile.TemporaryDirectory() as tmp:
    rows = []
    for framing in framings:
        folder = Path(tmp) / framing
        subprocess.run([nest, "world", "dataset", "-o", str(folder), "--identities", "1", "--contexts", str(per_domain),
                        "--seed", "21", "--framings", framing, "--size", str(side)], check=True, stdout=subprocess.DEVNULL)
        images = sorted((folder / "images").glob("*/*.png"))
        rows.append([Image.open(p).convert("RGB") for p in images])
    columns = max(len(r) for r in rows)
    sheet = Image.new("RGB", (columns * (side + gutter) + gutter, len(rows) * (side + gutter) + gutter), "white")
    for y, row in enumerate(rows):
        for x, image in enumerate(row):
            sheet.paste(image, (gutter + x * (side + gutter), gutter + y * (side + gutter)))
    sheet.save(output, optimize=True)
    print(f"wrote {output} ({output.stat().st_size // 1024} KB)")
