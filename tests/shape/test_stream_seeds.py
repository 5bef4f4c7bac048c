"""Stream seeds depend only on (seed, index, stream): the same on every process and after a resume."""
import hashlib

from congeal.shape.stream_seeds import stream_seed


def test_seeds_are_pinned_63_bit_and_independent():
    # pinned: the data module's batch_seed and checkpoints of earlier runs rely on these exact values
    expected = int.from_bytes(hashlib.sha256(b"congeal:0:sds-timestep:1500").digest()[:8], "little") & ((1 << 63) - 1)
    assert stream_seed(0, 1500, "sds-timestep") == expected
    seeds = {stream_seed(s, i, n) for s in (0, 1) for i in (0, 1, 2) for n in ("photos", "cameras", "sds-noise-0")}
    assert len(seeds) == 18 and all(0 <= v < 2 ** 63 for v in seeds)
