"""SPair-71k loader on a hand-written dataset (the `spair_root` fixture): pairs, images, masks, malformed files."""
import json

import pytest

from congeal.common.errors import InputError
from congeal.evaluation.spair import SPairDataset, from_continuous, to_continuous


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))


def test_loader_reads_pairs_images_and_masks(spair_root):
    data = SPairDataset(spair_root)
    assert data.categories() == ["cat", "dog"]
    pairs = data.pairs("test", category="cat")
    assert [p.pair_id for p in pairs] == ["000001-2008_000001-2008_000002:cat", "000002-2008_000002-2008_000003:cat"]
    first = pairs[0]
    assert (first.src_name, first.trg_name, first.category) == ("2008_000001", "2008_000002", "cat")
    assert first.src_kps.tolist() == [[6, 7], [10, 20]] and first.trg_bbox.tolist() == [0, 0, 100, 50]
    assert data.pairs("test", "dog")[0].src_kps.shape == (0, 2)
    assert data.split_images("test", "cat") == ["2008_000001", "2008_000002", "2008_000003"]
    ann = data.image_annotation("cat", "2008_000001")
    assert ann["kps"]["1"] is None and ann["kps"]["0"].tolist() == [6, 7]
    mask = data.load_mask("cat", "2008_000001")
    assert mask.shape == (30, 40) and mask.sum() == 15 * 20 and mask[10, 10] and not mask[0, 0]
    assert to_continuous([[0, 0]]).tolist() == [[0.5, 0.5]] and from_continuous([[0.5, 0.5]]).tolist() == [[0, 0]]


@pytest.mark.parametrize("content, problem", [
    ("{broken", "not valid JSON"),
    ({"src_imname": "a.jpg"}, "has no 'trg_imname'"),
    ({"src_imname": "a.jpg", "trg_imname": "b.jpg", "src_kps": [[1, 2]], "trg_kps": [],
      "src_bndbox": [0, 0, 1, 1], "trg_bndbox": [0, 0, 1, 1]}, "src_kps has 1 points but trg_kps has 0"),
    ({"src_imname": "a.jpg", "trg_imname": "b.jpg", "src_kps": [[1, "x"]], "trg_kps": [[1, 2]],
      "src_bndbox": [0, 0, 1, 1], "trg_bndbox": [0, 0, 1, 1]}, "'src_kps' is not a list"),
    ({"src_imname": "a.jpg", "trg_imname": "b.jpg", "src_kps": [], "trg_kps": [],
      "src_bndbox": [0, 0, 1, 1], "trg_bndbox": [5, 0, 1, 1]}, "'trg_bndbox'"),
])
def test_malformed_pair_annotation_names_the_file(spair_root, content, problem):
    pid = "000001-2008_000001-2008_000002:cat"
    path = spair_root / "PairAnnotation" / "test" / f"{pid}.json"
    _write(path, content)
    with pytest.raises(InputError) as info:
        SPairDataset(spair_root).pairs("test", "cat")
    assert str(path) in str(info.value) and problem in str(info.value)


def test_missing_layout_and_wrong_root(spair_root, tmp_path):
    (spair_root / "Layout" / "large" / "test.txt").unlink()
    with pytest.raises(InputError, match="test.txt"):
        SPairDataset(spair_root).pairs("test")
    with pytest.raises(InputError, match="not an SPair-71k root"):
        SPairDataset(tmp_path)
