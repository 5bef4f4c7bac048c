from congeal.commands.register import flagged_lines


def test_the_terminal_is_told_which_photos_are_flagged_and_why():
    summary = {"images": 8, "failed": 1, "flagged": {
        "cat_03": {"status": "failed", "reason": "confidence 0.04: its silhouette fits poorly (IoU 0.70)"},
        "cat_05": {"status": "undecided", "reason": "confidence 0.41: another distinct pose explains it almost as well"}}}
    lines = flagged_lines(summary)
    assert lines[0].startswith("2 of 8 photos flagged (1 failed")
    assert lines[1] == "  cat_03: failed - confidence 0.04: its silhouette fits poorly (IoU 0.70)"
    assert lines[2].startswith("  cat_05: undecided - ")


def test_nothing_is_said_when_every_camera_is_trusted():
    assert flagged_lines({"images": 8, "failed": 0}) == []
