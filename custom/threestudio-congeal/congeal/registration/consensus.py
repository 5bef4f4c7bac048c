"""Joint selection: choose one refined hypothesis per photo so that the whole collection agrees.

    choice = choose_jointly(score, xyz, opacity, masks, image_feats, ConsensusConfig())
    choice.order        # [N,k] each photo's hypotheses, best first, after the collection has voted
    choice.ambiguity    # [N] best joint score / runner-up's: 1 = the collection cannot tell the two readings apart

Why: a photo alone often cannot tell a symmetric object's two readings apart (front/back of a side view, a mirror
view of a near-symmetric teapot); its silhouette fits both and the canonical's colour is only a weak witness, more
so across instances. The other photos can: under the right reading, a photo's own features land on the canonical
points where the rest of the collection put the same features. Each hypothesis h of photo n carries its photo's
feature cells to canonical points (its final render's xyz); the points fall into a G³ grid of voxels over the
canonical. The hypothesis' *disagreement* D_h is the weighted mean of (1 − cosine) between each of its cells and the
mean feature the **other** photos' chosen hypotheses put in that voxel (a cell in a voxel nobody else saw counts the
collection's typical disagreement: neither evidence for nor against). The joint score of a hypothesis is its own
selection score + `weight` · D_h; choices are updated photo by photo (iterated conditional modes, from the
per-photo best) until no photo changes. A global flip of the whole collection leaves every D unchanged, so the
per-photo term (render vs photo) still decides the collection's overall orientation; the consensus decides the
photos that disagree with it.

Hypotheses of one photo refined into the same pose (< `distinct_deg` apart) are one reading, represented by its copy
with the best own score: the vote chooses among readings, never between copies (otherwise which copy of the same
pose wins would depend on the other photos at the float level, and a photo's camera on how the collection was
sharded). A copy reports its reading's disagreement, so its joint score is never below its representative's.

The ambiguity of a photo is its chosen joint score over its runner-up's (∈ [0, 1]), the runner-up being its best
hypothesis of a *different* pose (≥ `distinct_deg` away; hypotheses refined into the same pose are one reading); a
photo whose ambiguity reaches `undecided_ratio` is reported as undecided: neither the photo nor the collection
separates the two readings.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from congeal.common.atomic import write_safetensors
from congeal.common.paths import PathLike

FIELD_FORMAT = "congeal-consensus-field-v1"


@dataclass
class ConsensusConfig:
    """Joint selection settings."""

    weight: float = 1.0
    """Weight of the collection's disagreement in the joint score (0 = each photo chooses alone)."""
    grid: int = 8
    """Voxels per side of the canonical grid in which photos' features are compared."""
    iterations: int = 10
    """Maximum sweeps over the photos (a sweep that changes no photo ends the loop)."""
    undecided_ratio: float = 0.92
    """A photo whose chosen joint score is at least this fraction of its runner-up's is reported undecided. Chosen on
    the benchmark sets' tuning seeds (docs/evaluation.md): every photo registered > 30° off there had an ambiguity of
    0.923–0.999 (0.95 left 4 of 11 unreported), and same-instance photos stay under it (1 of 1216)."""
    distinct_deg: float = 10.0
    """The runner-up is the best hypothesis at least this far (rotation) from the chosen one: two hypotheses refined
    into the same pose are one reading, not an ambiguity."""
    min_cell_weight: float = 0.25
    """Feature cells less covered than this (mask × render opacity) do not vote."""


@dataclass
class ConsensusField:
    """What a collection's chosen hypotheses put in the canonical: the summed weighted photo features per voxel, the
    voxel grid's bounds and the collection's typical disagreement. Kept in the run, so photos added later
    (`congeal register --add`) are chosen against every photo already registered."""

    total: Float[Tensor, "V C"]
    lo: Float[Tensor, "3"]
    hi: Float[Tensor, "3"]
    unseen: float
    photos: int
    """how many photos' chosen hypotheses `total` holds."""


@dataclass
class JointChoice:
    """The collection's choice among N photos' k hypotheses (hypothesis h = n*k + j)."""

    order: Int[Tensor, "N k"]
    """each photo's hypotheses, best joint score first (indices j)."""
    disagreement: Float[Tensor, "NK"]
    """each hypothesis' disagreement with the other photos' chosen hypotheses (0 = full agreement)."""
    joint_score: Float[Tensor, "NK"]
    """selection score + weight · disagreement."""
    ambiguity: Float[Tensor, "N"]
    """chosen joint score / the best distinct reading's joint score (1 = indistinguishable; 0 when every other
    hypothesis is the same pose, or there is none)."""
    undecided: Bool[Tensor, "N"]
    """ambiguity ≥ undecided_ratio."""
    sweeps: int
    """ICM sweeps run."""
    field: ConsensusField
    """the collection's field after the choice (the prior's photos included)."""


@dataclass
class _Cells:
    """Every hypothesis' feature cells in canonical voxels."""

    voxel: Int[Tensor, "NK L"]
    feature: Float[Tensor, "NK L C"]
    weight: Float[Tensor, "NK L"]


def _cells(xyz: Float[Tensor, "NK S S 3"], opacity: Float[Tensor, "NK S S 1"], masks: Float[Tensor, "NK 1 S S"],
           feats: Float[Tensor, "NK C h w"], cfg: ConsensusConfig,
           bounds: Optional[Tuple[Tensor, Tensor]] = None) -> Tuple[_Cells, Tensor, Tensor]:
    """Pool each hypothesis' render to the feature grid: one canonical point and one photo feature per cell."""
    size = feats.shape[-2:]
    cover = opacity.permute(0, 3, 1, 2).float() * masks.float()
    weight = F.adaptive_avg_pool2d(cover, size)  # [NK,1,h,w]
    point = F.adaptive_avg_pool2d(xyz.permute(0, 3, 1, 2).float() * cover, size) / weight.clamp_min(1e-6)
    weight = torch.where(weight >= cfg.min_cell_weight, weight, torch.zeros_like(weight)).flatten(1)  # [NK,L]
    point = point.flatten(2).transpose(1, 2)  # [NK,L,3]
    valid = weight > 0
    if bounds is not None:
        lo, hi = bounds
    elif bool(valid.any()):
        lo, hi = point[valid].amin(0), point[valid].amax(0)
    else:
        lo, hi = point.new_zeros(3), point.new_ones(3)
    span = (hi - lo).clamp_min(1e-6)
    index = ((point - lo) / span * cfg.grid).long().clamp(0, cfg.grid - 1)
    voxel = (index[..., 0] * cfg.grid + index[..., 1]) * cfg.grid + index[..., 2]
    feature = F.normalize(feats.float().flatten(2).transpose(1, 2), dim=-1)  # [NK,L,C]
    return _Cells(voxel=voxel, feature=feature, weight=weight), lo, hi


def _scatter(cells: _Cells, rows: Int[Tensor, "R"], voxels: int) -> Float[Tensor, "V C"]:
    """Sum of weighted features of hypotheses `rows` per voxel."""
    feature = (cells.feature[rows] * cells.weight[rows, :, None]).flatten(0, 1)
    total = feature.new_zeros(voxels, feature.shape[-1])
    return total.index_add_(0, cells.voxel[rows].flatten(), feature)


def _agreement(cells: _Cells, rows: Int[Tensor, "R"], others: Float[Tensor, "V C"]) -> Tuple[Tensor, Tensor]:
    """Per cell of hypotheses `rows`: cosine with the others' mean feature in its voxel, and how much the others saw
    there (∈ [0, 1): 0 where nobody else looked)."""
    reference = others[cells.voxel[rows]]  # [R,L,C]
    support = reference.norm(dim=-1)  # ~ the others' summed weight there
    cosine = (cells.feature[rows] * F.normalize(reference, dim=-1)).sum(-1)
    return cosine, support / (support + 1.0)


def _disagreement(cells: _Cells, rows: Int[Tensor, "R"], others: Float[Tensor, "V C"],
                  unseen: float) -> Float[Tensor, "R"]:
    """Weighted mean (1 − cos) of hypotheses `rows`' cells against the others' mean feature in their voxels. A cell
    in a voxel nobody else saw neither agrees nor contradicts: it counts `unseen` (else a reading that carries the
    photo to places no other photo saw, e.g. inside out, would look like perfect agreement)."""
    cosine, seen = _agreement(cells, rows, others)
    per_cell = seen * (1.0 - cosine) + (1.0 - seen) * unseen
    weight = cells.weight[rows]
    return (per_cell * weight).sum(-1) / weight.sum(-1).clamp_min(1e-6)


def _typical_disagreement(cells: _Cells, rows: Int[Tensor, "N"], voxels: int, base: Tensor) -> float:
    """The median disagreement of all photos' chosen hypotheses, seen cells only: the value of an unseen cell."""
    total = base + _scatter(cells, rows, voxels)
    values = []
    for row in rows.tolist():
        one = torch.tensor([row], device=rows.device)
        cosine, seen = _agreement(cells, one, total - _scatter(cells, one, voxels))
        vote = cells.weight[one] * seen
        if float(vote.sum()) > 0:
            values.append(float(((1.0 - cosine) * vote).sum() / vote.sum()))
    return float(torch.tensor(values).median()) if values else 0.5


def choose_jointly(score: Float[Tensor, "N k"], xyz: Float[Tensor, "NK S S 3"], opacity: Float[Tensor, "NK S S 1"],
                   masks: Float[Tensor, "N 1 S S"], image_feats: Float[Tensor, "N C h w"],
                   cfg: ConsensusConfig, prior: Optional[ConsensusField] = None,
                   rotations: Optional[Float[Tensor, "NK 3 3"]] = None) -> JointChoice:
    """Choose each photo's hypothesis with the collection (see the module docstring).

    Args:
        score: each hypothesis' own selection score (lower is better).
        xyz: canonical point under every pixel of every hypothesis' final render (photo n's hypotheses at n*k + j).
        opacity: those renders' opacity.
        masks: the photos' masks.
        image_feats: the photos' features (unit length over C).
        cfg: ConsensusConfig.
        prior: the field of photos registered before (their choices stay; they vote for the new photos').
        rotations: every hypothesis' camera rotation, to tell distinct readings from one pose refined twice (None:
            every hypothesis counts as distinct).
    Returns:
        JointChoice.
    """
    n, k = score.shape
    device = score.device
    photo_of = torch.arange(n, device=device).repeat_interleave(k)
    reading = _readings(score, rotations, cfg.distinct_deg)  # [N,k] index j of each hypothesis' representative
    is_copy = reading != torch.arange(k, device=device)
    voxels = cfg.grid ** 3
    usable = prior is not None and prior.total.shape == (voxels, image_feats.shape[1])
    bounds = (prior.lo.to(device), prior.hi.to(device)) if usable else None
    cells, lo, hi = _cells(xyz, opacity, masks[photo_of], image_feats[photo_of], cfg, bounds)
    base = prior.total.to(device).float() if usable else cells.feature.new_zeros(voxels, image_feats.shape[1])
    voters = n + (prior.photos if usable else 0)
    choice = score.argmin(dim=1)  # [N] index j
    rows = torch.arange(n, device=device) * k
    sweeps = 0
    if usable:
        unseen = prior.unseen
    else:
        unseen = _typical_disagreement(cells, rows + choice, voxels, base) if voters > 1 else 0.0
    if cfg.weight > 0 and voters > 1 and k > 1:
        total = base + _scatter(cells, rows + choice, voxels)
        for sweeps in range(1, cfg.iterations + 1):
            changed = False
            for i in range(n):  # one photo at a time (ICM): bookkeeping per photo, tensor work per hypothesis
                mine = rows[i] + torch.arange(k, device=device)
                current = (rows[i] + choice[i]).reshape(1)
                others = total - _scatter(cells, current, voxels)
                reading_disagreement = _disagreement(cells, mine, others, unseen)[reading[i]]
                joint = score[i] + cfg.weight * reading_disagreement
                best = int(joint.masked_fill(is_copy[i], float("inf")).argmin())
                if best != int(choice[i]):
                    total = others + _scatter(cells, mine[best:best + 1], voxels)
                    choice[i] = best
                    changed = True
            if not changed:
                break
    # final disagreements against the settled choices (leave-one-out per photo)
    disagreement = torch.zeros(n * k, device=device)
    total = base + _scatter(cells, rows + choice, voxels)
    if voters > 1:
        for i in range(n):
            mine = rows[i] + torch.arange(k, device=device)
            others = total - _scatter(cells, (rows[i] + choice[i]).reshape(1), voxels)
            disagreement[mine] = _disagreement(cells, mine, others, unseen)[reading[i]]
    weight = cfg.weight if voters > 1 else 0.0
    joint = score.reshape(-1) + weight * disagreement
    # best joint score first; at a tie a representative before its copies (a copy's own score is never lower)
    first = is_copy.long().argsort(dim=1, stable=True)
    order = first.gather(1, joint.view(n, k).gather(1, first).argsort(dim=1, stable=True))
    ranked = joint.view(n, k).gather(1, order)
    distinct = torch.ones(n, k, dtype=torch.bool, device=device)
    if rotations is not None:
        angles = _pairwise_angles_deg(rotations.reshape(n, k, 3, 3))  # [N,k,k]
        chosen = angles.gather(1, order[:, :1, None].expand(n, 1, k)).squeeze(1)  # [N,k] from the chosen one
        distinct = chosen.gather(1, order) >= cfg.distinct_deg
    distinct[:, 0] = False
    runner_up = torch.where(distinct, ranked, torch.full_like(ranked, float("inf"))).amin(dim=1)
    ambiguity = torch.where(torch.isfinite(runner_up), ranked[:, 0] / runner_up.clamp_min(1e-6),
                            torch.zeros_like(runner_up))
    field = ConsensusField(total=total, lo=lo, hi=hi, unseen=float(unseen), photos=voters)
    return JointChoice(order=order, disagreement=disagreement, joint_score=joint, ambiguity=ambiguity,
                       undecided=ambiguity >= cfg.undecided_ratio, sweeps=sweeps, field=field)


def _pairwise_angles_deg(rotations: Float[Tensor, "N k 3 3"]) -> Float[Tensor, "N k k"]:
    """Rotation angle between every two hypotheses of each photo."""
    r = rotations.float()
    relative = r[:, :, None].transpose(-1, -2) @ r[:, None]
    cos = (relative.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


def _readings(score: Float[Tensor, "N k"], rotations: Optional[Float[Tensor, "NK 3 3"]],
              distinct_deg: float) -> Int[Tensor, "N k"]:
    """Each hypothesis' reading: the index j of the best-scored hypothesis of its photo it is a copy of (< distinct_deg
    apart), itself when it is a reading's best copy. Photos are few per hypothesis count (k ≤ a handful): the greedy
    pass over a photo's ranked hypotheses is a loop over k, with tensor work over photos."""
    n, k = score.shape
    reading = torch.arange(k, device=score.device).expand(n, k).clone()
    if rotations is None or k < 2:
        return reading
    angles = _pairwise_angles_deg(rotations.reshape(n, k, 3, 3))
    rank = score.argsort(dim=1, stable=True)  # best own score first
    representative = torch.zeros(n, k, dtype=torch.bool, device=score.device)
    rows = torch.arange(n, device=score.device)
    for position in range(k):
        j = rank[:, position]  # [N]
        near = (angles[rows, j] < distinct_deg) & representative  # representatives close to j
        first = torch.where(near, score, torch.full_like(score, float("inf"))).argmin(dim=1)
        has = near.any(dim=1)
        reading[rows, j] = torch.where(has, first, j)
        representative[rows, j] = ~has
    return reading


def save_field(path: PathLike, field: ConsensusField) -> None:
    """Write a collection's field (safetensors, atomically)."""
    write_safetensors(path, {"total": field.total.float().cpu().contiguous(), "lo": field.lo.float().cpu(),
                             "hi": field.hi.float().cpu()},
                      metadata={"format": FIELD_FORMAT, "unseen": repr(field.unseen), "photos": str(field.photos)})


def load_field(path: PathLike) -> Optional[ConsensusField]:
    """A saved field, or None when there is none (runs made before it existed) or it is of another format."""
    from safetensors import safe_open

    if not Path(path).is_file():
        return None
    try:  # a damaged or foreign cache is no cache: it is recomputed
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FIELD_FORMAT:
                return None
            return ConsensusField(total=f.get_tensor("total"), lo=f.get_tensor("lo"), hi=f.get_tensor("hi"),
                                  unseen=float(meta["unseen"]), photos=int(meta["photos"]))
    except Exception:  # noqa: BLE001 - SafetensorError, KeyError, ValueError of a truncated or edited file
        return None
