"""`congeal invert` end to end on a tiny saved pipeline: outputs, loss lines, resume, errors, --bench smoke."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from congeal.cli import main
from congeal.inversion.embedding_files import load_learned_embeds

from helpers.textual_inversion import collection, one_thread, pipeline_dir  # noqa: F401


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i, image in enumerate(collection(3, size=40)):
        array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array[:, 4:]).save(folder / f"photo{i}.png")  # non-square: centre-cropped
    return folder


def invert(photos, out, *extra):
    return main(["invert", "--images", str(photos), "--model", str(pipeline_dir()), "--init-word", "toy",
                 "--resolution", "32", "--lr", "0.05", "--no-progress", "--log-every", "2", "--out", str(out), *extra])


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_invert_writes_outputs_and_resumes_exactly(photos, tmp_path, capsys):
    assert invert(photos, tmp_path / "a", "--steps", "4") == 0
    printed = capsys.readouterr().out
    assert "step 2/4 loss" in printed and "step 4/4 loss" in printed
    summary = last_json(printed)
    assert summary["steps"] == 4 and summary["images"] == 3 and summary["seconds"] > 0
    assert np.isfinite(summary["first_loss"]) and np.isfinite(summary["last_loss"])
    embeds = load_learned_embeds(tmp_path / "a" / "learned_embeds.safetensors")
    assert list(embeds) == ["<congeal>"] and embeds["<congeal>"].shape == (1, 32)
    assert len(json.loads((tmp_path / "a" / "losses.json").read_text())) == 4
    assert Image.open(tmp_path / "a" / "loss_curve.png").size == (640, 360)
    assert json.loads((tmp_path / "a" / "invert.json").read_text())["config"]["init_word"] == "toy"

    assert invert(photos, tmp_path / "a", "--steps", "6", "--resume") == 0
    assert last_json(capsys.readouterr().out)["steps"] == 6
    assert invert(photos, tmp_path / "b", "--steps", "6") == 0
    capsys.readouterr()
    resumed = load_learned_embeds(tmp_path / "a" / "learned_embeds.safetensors")["<congeal>"]
    straight = load_learned_embeds(tmp_path / "b" / "learned_embeds.safetensors")["<congeal>"]
    assert torch.equal(resumed, straight)


def test_invert_errors_are_clear(photos, tmp_path, capsys):
    assert invert(photos, tmp_path / "a", "--steps", "1") == 0
    capsys.readouterr()
    assert invert(photos, tmp_path / "a", "--steps", "1") == 2
    assert "pass --resume" in capsys.readouterr().err
    assert invert(tmp_path / "nowhere", tmp_path / "c", "--steps", "1") == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert invert(tmp_path / "empty", tmp_path / "c", "--steps", "1") == 2
    assert "holds no photos" in capsys.readouterr().err
    (tmp_path / "fake-model" / "unet").mkdir(parents=True)
    code = main(["invert", "--images", str(photos), "--model", str(tmp_path / "fake-model"), "--out", str(tmp_path / "d")])
    assert code == 2 and "missing vae, text_encoder, tokenizer" in capsys.readouterr().err
    assert invert(photos, tmp_path / "e", "--steps", "1", "--init-word", "teddybear") == 2
    assert "not one" in capsys.readouterr().err
    assert invert(photos, tmp_path / "f", "--steps", "1", "--background", "white") == 2
    assert "needs a mask" in capsys.readouterr().err


def test_bench_smoke_prints_one_json_line(capsys):
    code = main(["invert", "--bench", "--bench-size", "tiny", "--steps", "3", "--resolution", "32", "--device", "cpu",
                 "--no-progress"])
    assert code == 0
    result = last_json(capsys.readouterr().out)
    assert result["bench"] == "textual_inversion" and result["steps"] == 3 and result["ms_per_step"] > 0
    assert result["peak_memory_gb"] is None and result["weights_dtype"] == "float32"
