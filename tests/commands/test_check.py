"""`congeal check DIR`: one row per photo, skipped files listed, exit 2 when unusable, --preview contact sheet."""
import subprocess
import sys

import numpy as np
from PIL import Image

from congeal.cli import main
from helpers.images import box_mask, object_array, photo_with_mask_file, rgba_photo


def _check(capsys, *args):
    code = main(["check", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rows(out: str):
    return {line.split()[0]: line for line in out.splitlines() if line and not line.startswith((" ", "congeal"))}


def test_usable_collection(tmp_path, capsys):
    rgba_photo(tmp_path / "b.png")  # 80x64, object 40x32
    photo_with_mask_file(tmp_path, "a", 90, 70, box=(30, 70, 10, 40), suffix=".jpg")
    (tmp_path / "notes.txt").write_text("x")
    code, out, _ = _check(capsys, tmp_path)
    assert code == 0
    rows = _rows(out)
    assert rows["b.png"].split()[1:5] == ["80x64", "alpha", "25.0%", "OK"]
    assert rows["a.jpg"].split()[1:5] == ["70x90", "file:masks/a.png", f"{100 * 1200 / 6300:.1f}%", "OK"]
    assert "notes.txt  (not an image (.txt))" in out and "masks  (mask folder)" in out
    assert out.strip().splitlines()[-1] == "result: 2 OK, 0 WARN, 0 ERROR -> usable"


def test_unusable_collection_reports_every_row_and_still_previews(tmp_path, capsys):
    rgba_photo(tmp_path / "good.png")
    photo_with_mask_file(tmp_path, "whole", box=(0, 64, 0, 80))  # mask covers the frame: WARN
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    (tmp_path / "椅子.png").touch()
    preview = tmp_path / "out" / "sheet.png"
    code, out, _ = _check(capsys, tmp_path, "--preview", preview, "--size", 32, "--tile", 48)
    assert code == 2
    rows = _rows(out)
    assert rows["good.png"].split()[4] == "OK"
    assert rows["whole.png"].split()[4] == "WARN" and "covers 100.0% of the frame" in rows["whole.png"]
    assert rows["broken.jpg"].split()[4] == "ERROR" and "Fix:" in rows["broken.jpg"]
    assert rows["椅子.png"].split()[4] == "ERROR" and "0-byte" in rows["椅子.png"]
    assert "UNUSABLE" in out.strip().splitlines()[-1] and "2 ERROR" in out
    # the contact sheet: 4 tiles in a 2x2 grid, nothing else left in the folder (atomic write)
    assert [p.name for p in preview.parent.iterdir()] == ["sheet.png"]
    sheet = np.asarray(Image.open(preview).convert("RGB")).astype(int)
    assert sheet.shape[1] == 2 * (48 + 4) + 4
    corner = sheet[4 + 2, 4 + 2]  # first tile (broken.jpg: grey ERROR tile, mask all ones: untinted)
    assert abs(corner[0] - corner[1]) < 3
    good = sheet[4 + 2, 4 + 52 + 2]  # second tile (good.png): background tinted red
    assert good[0] > good[1] + 60 and good[0] > good[2] + 60


def test_white_background_option(tmp_path, capsys):
    for i in range(2):
        Image.fromarray(object_array(60, 80, (10, 50, 20 + i, 60))).save(tmp_path / f"w{i}.png")
    code, out, _ = _check(capsys, tmp_path)
    assert code == 2 and "has no mask" in out and "white-background" in out
    code, out, _ = _check(capsys, tmp_path, "--mask", "white-background")
    assert code == 0
    assert _rows(out)["w0.png"].split()[2:5] == ["white-background", f"{100 * 1600 / 4800:.1f}%", "OK"]


def test_collection_level_errors_exit_2(tmp_path, capsys):
    rgba_photo(tmp_path / "only.png")
    code, out, _ = _check(capsys, tmp_path)
    assert code == 2 and "at least 2" in out
    rgba_photo(tmp_path / "only.jpg")
    code, _, err = _check(capsys, tmp_path)
    assert code == 2 and "only.jpg and only.png" in err
    code, _, err = _check(capsys, tmp_path / "missing")
    assert code == 2 and "does not exist" in err
    (tmp_path / "only.jpg").unlink()
    rgba_photo(tmp_path / "second.png")
    code, _, err = _check(capsys, tmp_path, "--mask", "sam", "--sam-model", tmp_path / "no-model")
    assert code == 2 and "not a SAM model folder" in err


def test_no_traceback_from_the_command_line(tmp_path):
    rgba_photo(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    result = subprocess.run([sys.executable, "-m", "congeal", "check", str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "b.jpg" in result.stdout and "ERROR" in result.stdout


def test_write_contact_sheet_from_a_collection(tmp_path):
    from congeal.viz.contact_sheet import write_contact_sheet
    from congeal.io.collection import load_collection

    for i in range(3):
        rgba_photo(tmp_path / f"p{i}.png", box=(16, 48, 20 + i, 60))
    collection = load_collection(tmp_path, size=32)
    out = write_contact_sheet(collection, tmp_path / "sheet" / "preview.png", tile=40, columns=3)
    sheet = np.asarray(Image.open(out).convert("RGB"))
    assert sheet.shape[:2][1] == 3 * (40 + 4) + 4 and sheet.shape[0] > 40 + 4
    assert sorted(p.name for p in out.parent.iterdir()) == ["preview.png"]


def test_fallbacks_are_ok_rows_with_a_note(tmp_path, capsys):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.dstack([object_array(64, 80, (16, 48, 20, 60)), np.full((64, 80), 255, np.uint8)])).save(
        tmp_path / "opaque.png")  # fully opaque alpha: noted, falls back to the mask file
    Image.fromarray(box_mask(64, 80, (16, 48, 20, 60)).astype(np.uint8) * 255).save(tmp_path / "opaque_mask.png")
    rgba_photo(tmp_path / "turned.png")
    Image.open(tmp_path / "turned.png").save(tmp_path / "turned.png", exif=exif.tobytes())
    code, out, _ = _check(capsys, tmp_path)
    rows = _rows(out)
    assert code == 0
    assert rows["turned.png"].split()[1] == "64x80" and rows["turned.png"].split()[4] == "OK"
    assert "EXIF orientation 6 applied" in rows["turned.png"]
    assert rows["opaque.png"].split()[4] == "OK" and "fully opaque" in rows["opaque.png"]
