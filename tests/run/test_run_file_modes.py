"""Every file of a real run folder gets the mode a plain open() would give (0666 masked by the umask), so a lab's
shared run folder, a web server or a second user can read poses.json, the maps and the pictures."""
import os
import stat

from helpers.photo_folders import split_into_folders

SMALL = {"grid": {"n_azimuth": 8, "n_elevation": 6}, "search": {"render_size": 48, "render_samples": 16},
         "refine": {"steps": 10}, "mapping": {"steps": 5}}


def test_every_file_of_a_chunked_run_folder_has_the_umasks_mode(synthetic_collection, tmp_path):
    from congeal.run.chunked import register_in_chunks
    from congeal.run.pipeline import add_images

    collection = synthetic_collection("same")
    images = sorted((collection / "images").glob("*.png"))
    first, later = split_into_folders(images, tmp_path, 2, later=images[2:3], link=True)
    out = tmp_path / "run"
    previous = os.umask(0o027)
    try:
        register_in_chunks(collection / "canonical.safetensors", first, out, chunk_size=1, preset="fast",
                           features="rgb", device="cpu", progress=False, overrides=SMALL)
        add_images(out, later, device="cpu", progress=False)
    finally:
        os.umask(previous)
    files = [p for p in out.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in files}
    assert {".json", ".npz", ".safetensors", ".png"} <= kinds, kinds
    assert (out / "poses.json").is_file() and (out / "maps").is_dir() and (out / "chunks" / "merged.json").is_file()
    wrong = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if stat.S_IMODE(p.stat().st_mode) != 0o640}
    assert not wrong, wrong
    folders = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in out.rglob("*")
               if p.is_dir() and stat.S_IMODE(p.stat().st_mode) != 0o750}
    assert not folders, folders
