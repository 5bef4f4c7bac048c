"""Seeds of independent random streams: one 63-bit seed per (run seed, index, stream name), no shared state.

    stream_seed(0, 1500, "sds-timestep")     # the timestep of SDS step 1500
    stream_seed(0, 1500, "sds-noise-3")      # the noise of view group 3 of that step

A seed depends only on its inputs, so any process, fresh or resumed, draws the same numbers for the same step.
The image-collection data module's `batch_seed` (photos, cameras) is the same function.
"""
import hashlib


def stream_seed(seed: int, index: int, stream: str) -> int:
    """Args: seed: the run's seed. index: the step or batch number. stream: the stream's name.
    Returns: a seed in [0, 2^63) from sha256 of the three (independent across streams and indices)."""
    digest = hashlib.sha256(f"congeal:{int(seed)}:{stream}:{int(index)}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
