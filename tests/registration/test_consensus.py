"""Joint selection: the collection overrules a photo that prefers a flipped reading, and says when it cannot decide."""
import torch

from congeal.registration.consensus import ConsensusConfig, choose_jointly

S = 16


def _collection(n: int, flipped_prefers: int):
    """n photos of a two-coloured object (x < 0 red, x > 0 blue), each with two hypotheses: the true reading (j=0)
    and its mirror x -> -x (j=1). Every photo's own score prefers the truth a little, except photo `flipped_prefers`,
    whose own score prefers the mirror."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, S), torch.linspace(-1, 1, S), indexing="ij")
    true_xyz = torch.stack([xs, ys, 0.3 * xs.square()], dim=-1)  # [S,S,3]: a surface symmetric in x
    mirror = true_xyz * torch.tensor([-1.0, 1.0, 1.0])
    xyz = torch.stack([true_xyz, mirror] * n)  # [2n,S,S,3], hypothesis h = 2i + j
    opacity = torch.ones(2 * n, S, S, 1)
    masks = torch.ones(n, 1, S, S)
    red = (xs < 0).float()
    feats = torch.stack([red, 1 - red, torch.full_like(red, 0.1)])  # photo features follow the true points
    image_feats = torch.nn.functional.normalize(feats, dim=0)[None].repeat(n, 1, 1, 1)
    score = torch.tensor([[0.30, 0.32]] * n)
    score[flipped_prefers] = torch.tensor([0.33, 0.30])
    return score, xyz, opacity, masks, image_feats


def test_the_collection_overrules_a_photo_preferring_the_flip():
    score, xyz, opacity, masks, feats = _collection(6, flipped_prefers=2)
    alone = choose_jointly(score, xyz, opacity, masks, feats, ConsensusConfig(weight=0.0))
    assert alone.order[2, 0] == 1  # on its own the photo takes the mirror
    joint = choose_jointly(score, xyz, opacity, masks, feats, ConsensusConfig(weight=1.0))
    assert joint.order[:, 0].tolist() == [0] * 6
    # the mirror reading disagrees with the collection everywhere; the truth agrees
    assert float(joint.disagreement[0::2].max()) < 0.05
    assert float(joint.disagreement[1::2].min()) > 0.5
    assert not bool(joint.undecided.any())
    assert float(joint.ambiguity.max()) < 0.7


def test_a_symmetric_photo_is_reported_undecided():
    score, xyz, opacity, masks, feats = _collection(5, flipped_prefers=0)
    # photo 4 sees only a uniform colour: both readings put the same features everywhere, and its own score ties
    feats[4] = torch.nn.functional.normalize(torch.ones_like(feats[4]), dim=0)
    score[4] = torch.tensor([0.30, 0.30])
    joint = choose_jointly(score, xyz, opacity, masks, feats, ConsensusConfig())
    assert bool(joint.undecided[4]) and float(joint.ambiguity[4]) > 0.99
    assert not bool(joint.undecided[:4].any())


def test_one_photo_or_one_hypothesis_keeps_the_per_photo_choice():
    score, xyz, opacity, masks, feats = _collection(1, flipped_prefers=0)
    joint = choose_jointly(score, xyz, opacity, masks, feats, ConsensusConfig())
    assert joint.order[0].tolist() == [1, 0] and joint.sweeps == 0
    assert torch.equal(joint.joint_score, score.reshape(-1))
    single = choose_jointly(score[:, :1], xyz[:1], opacity[:1], masks, feats, ConsensusConfig())
    assert single.order.tolist() == [[0]] and float(single.ambiguity[0]) == 0.0


def test_photos_added_later_are_chosen_against_the_saved_field(tmp_path):
    from congeal.registration.consensus import load_field, save_field

    score, xyz, opacity, masks, feats = _collection(6, flipped_prefers=5)
    first = choose_jointly(score[:5], xyz[:10], opacity[:10], masks[:5], feats[:5], ConsensusConfig())
    save_field(tmp_path / "consensus.safetensors", first.field)
    field = load_field(tmp_path / "consensus.safetensors")
    assert field.photos == 5 and torch.allclose(field.total, first.field.total)
    # the sixth photo alone prefers the mirror; with the five registered photos voting it takes the truth
    alone = choose_jointly(score[5:], xyz[10:], opacity[10:], masks[5:], feats[5:], ConsensusConfig())
    assert alone.order[0, 0] == 1
    added = choose_jointly(score[5:], xyz[10:], opacity[10:], masks[5:], feats[5:], ConsensusConfig(), prior=field)
    assert added.order[0, 0] == 0 and added.field.photos == 6
    assert load_field(tmp_path / "missing.safetensors") is None


def test_two_hypotheses_refined_into_one_pose_are_not_an_ambiguity():
    """Same features, same score, but the same rotation: one reading, so nothing is undecided."""
    score, xyz, opacity, masks, feats = _collection(4, flipped_prefers=0)
    score[:] = torch.tensor([0.30, 0.30])
    xyz[1::2] = xyz[0::2]  # the second hypothesis is the first one again
    same = torch.eye(3).expand(8, 3, 3).clone()
    joint = choose_jointly(score, xyz, opacity, masks, feats, ConsensusConfig(), rotations=same)
    assert float(joint.ambiguity.max()) == 0.0 and not bool(joint.undecided.any())
    # 90° apart, the same numbers are a tie between two readings
    turned = same.clone()
    turned[1::2] = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    tie = choose_jointly(score, xyz, opacity, masks, feats, ConsensusConfig(), rotations=turned)
    assert bool(tie.undecided.all())


def test_the_vote_chooses_readings_never_between_copies_of_one():
    """Photo 0 has two copies of the true reading (0.3° apart) and the mirror. The copy with the worse own score
    agrees better with the collection (its points are the truth, the better copy's are slightly off), but it is the
    same pose: the better-scored copy represents the reading, whatever the other photos vote, so the chosen camera
    does not depend on which photos share the run."""
    score, xyz, opacity, masks, feats = _collection(5, flipped_prefers=0)
    k = 3
    xyz = torch.stack([xyz[0::2], xyz[0::2], xyz[1::2]], dim=1).flatten(0, 1)  # [5*3,...]: truth, truth, mirror
    xyz[0] = xyz[0].roll(3, dims=1)  # photo 0's best-scored copy lands a little off the collection's points
    opacity = torch.ones(5 * k, S, S, 1)
    score = torch.tensor([[0.30, 0.31, 0.32]] * 5)
    score[0] = torch.tensor([0.30, 0.305, 0.33])
    rotations = torch.eye(3).expand(5 * k, 3, 3).clone()
    mirror = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))
    rotations[2::k] = mirror
    turn = torch.tensor(0.3).deg2rad()
    rotations[1] = torch.tensor([[1.0, 0.0, 0.0], [0.0, turn.cos(), -turn.sin()], [0.0, turn.sin(), turn.cos()]])

    joint = choose_jointly(score, xyz, opacity, masks, feats, ConsensusConfig(), rotations=rotations)
    assert joint.order[0].tolist() == [0, 1, 2]  # the better-scored copy, then its copy, then the mirror
    # the copy reports its reading's disagreement: its joint score is never below the representative's
    assert float(joint.disagreement[1]) == float(joint.disagreement[0])
    assert float(joint.joint_score[1]) >= float(joint.joint_score[0])
    # without rotations every hypothesis is its own reading, and the vote takes the copy that agrees better
    loose = choose_jointly(score, xyz, opacity, masks, feats, ConsensusConfig(weight=5.0))
    assert loose.order[0, 0] == 1
    # a copy is never chosen, even with a vote that heavy
    heavy = choose_jointly(score, xyz, opacity, masks, feats, ConsensusConfig(weight=5.0), rotations=rotations)
    assert heavy.order[0, 0] == 0 and not bool(heavy.undecided[0])
