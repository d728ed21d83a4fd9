"""Losses against literal loops over pairs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vsekit.losses import ContrastiveLoss, InfoNCELoss, MaxViolationLoss


def batch(b=6, d=8, seed=0, ids=None):
    g = torch.Generator().manual_seed(seed)
    im = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    s = F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=1)
    ids = torch.tensor(ids if ids is not None else list(range(b)))
    return im, s, ids


# images 0, 0, 1, 2, 2, 2: rows 0/1 and 3/4/5 are captions of the same image
SHARED_IDS = [0, 0, 1, 2, 2, 2]


def dot(a, b):
    return float(sum(x * y for x, y in zip(a.tolist(), b.tolist(), strict=True)))


def is_negative(ids, i, j, same_image_negatives):
    return i != j and (same_image_negatives or int(ids[i]) != int(ids[j]))


def contrastive_loop(im, s, ids, margin, same_image_negatives=False):
    total = 0.0
    n = len(ids)
    for i in range(n):
        for j in range(n):
            if not is_negative(ids, i, j, same_image_negatives):
                continue
            total += max(0.0, margin - dot(im[i], s[i]) + dot(im[i], s[j]))  # contrastive captions for image i
            total += max(0.0, margin - dot(im[j], s[j]) + dot(im[i], s[j]))  # contrastive images for caption j
    return total


def max_violation_loop(im, s, ids, margin, same_image_negatives=False):
    total = 0.0
    n = len(ids)
    for i in range(n):
        costs = [max(0.0, margin - dot(im[i], s[i]) + dot(im[i], s[j]))
                 for j in range(n) if is_negative(ids, i, j, same_image_negatives)]
        total += max(costs, default=0.0)
    for j in range(n):
        costs = [max(0.0, margin - dot(im[j], s[j]) + dot(im[i], s[j]))
                 for i in range(n) if is_negative(ids, i, j, same_image_negatives)]
        total += max(costs, default=0.0)
    return total


@pytest.mark.parametrize("margin", [0.0, 0.2, 1.5])
@pytest.mark.parametrize("seed", [0, 1])
def test_contrastive_equals_double_loop(margin, seed):
    im, s, ids = batch(seed=seed)
    loss = ContrastiveLoss(ContrastiveLoss.Config(margin=margin))(im, s, ids)
    assert loss.item() == pytest.approx(contrastive_loop(im, s, ids, margin), rel=1e-12, abs=1e-12)


def test_contrastive_same_image_excluded_by_default():
    im, s, ids = batch(ids=SHARED_IDS)
    excluded = ContrastiveLoss(ContrastiveLoss.Config(margin=0.5))(im, s, ids).item()
    included = ContrastiveLoss(ContrastiveLoss.Config(margin=0.5, same_image_negatives=True))(im, s, ids).item()
    assert excluded == pytest.approx(contrastive_loop(im, s, ids, 0.5, False), rel=1e-12)
    assert included == pytest.approx(contrastive_loop(im, s, ids, 0.5, True), rel=1e-12)
    assert included > excluded  # the 2 + 6 same-image pairs add cost with margin 0.5 on random vectors


def test_contrastive_zero_when_positives_win_by_margin():
    im = torch.eye(4, dtype=torch.float64)
    loss = ContrastiveLoss(ContrastiveLoss.Config(margin=0.5))(im, im.clone(), torch.arange(4))
    assert loss.item() == 0.0
    # margin 1 on orthogonal pairs: every one of the 12 negatives costs exactly 0 (1 - 1 + 0), margin 1.5 costs 0.5
    loss = ContrastiveLoss(ContrastiveLoss.Config(margin=1.5))(im, im.clone(), torch.arange(4))
    assert loss.item() == pytest.approx(12 * 2 * 0.5)


@pytest.mark.parametrize("same", [False, True])
@pytest.mark.parametrize("ids", [None, SHARED_IDS])
def test_max_violation_equals_hardest_negative_loop(same, ids):
    im, s, ids_t = batch(seed=3, ids=ids)
    fn = MaxViolationLoss(MaxViolationLoss.Config(margin=0.2, same_image_negatives=same))
    got = fn(im, s, ids_t, step=100, epoch=5.0).item()
    assert got == pytest.approx(max_violation_loop(im, s, ids_t, 0.2, same), rel=1e-12, abs=1e-12)


def test_max_violation_warmup_is_summed_hinge():
    im, s, ids = batch(seed=4, ids=SHARED_IDS)
    summed = contrastive_loop(im, s, ids, 0.2)
    hardest = max_violation_loop(im, s, ids, 0.2)
    assert summed > hardest > 0
    by_epoch = MaxViolationLoss(MaxViolationLoss.Config(margin=0.2, warmup_epochs=1.0))
    assert by_epoch(im, s, ids, step=0, epoch=0.5).item() == pytest.approx(summed, rel=1e-12)
    assert by_epoch(im, s, ids, step=0, epoch=1.0).item() == pytest.approx(hardest, rel=1e-12)
    by_step = MaxViolationLoss(MaxViolationLoss.Config(margin=0.2, warmup_steps=10))
    assert by_step(im, s, ids, step=9, epoch=3.0).item() == pytest.approx(summed, rel=1e-12)
    assert by_step(im, s, ids, step=10, epoch=3.0).item() == pytest.approx(hardest, rel=1e-12)


def test_max_violation_row_without_negatives_costs_nothing():
    # every caption is of image 0: no negatives at all (same-image pairs excluded)
    im, s, ids = batch(b=3, seed=5, ids=[0, 0, 0])
    assert MaxViolationLoss(MaxViolationLoss.Config(margin=0.2))(im, s, ids, step=1, epoch=1.0).item() == 0.0
    assert ContrastiveLoss(ContrastiveLoss.Config(margin=0.2))(im, s, ids).item() == 0.0


def infonce_manual(im, s, ids, temperature, same_image_negatives=False):
    n = len(ids)
    scale = 1.0 / temperature
    logits = [[scale * dot(im[i], s[j]) for j in range(n)] for i in range(n)]

    def xent(rows):
        total = 0.0
        for i in range(n):
            keep = [j for j in range(n) if j == i or same_image_negatives or int(ids[i]) != int(ids[j])]
            lse = math.log(sum(math.exp(rows(i, j)) for j in keep))
            total += lse - rows(i, i)
        return total / n

    return (xent(lambda i, j: logits[i][j]) + xent(lambda i, j: logits[j][i])) / 2


@pytest.mark.parametrize("same", [False, True])
@pytest.mark.parametrize("ids", [None, SHARED_IDS])
def test_infonce_equals_manual_cross_entropy(same, ids):
    im, s, ids_t = batch(seed=6, ids=ids)
    fn = InfoNCELoss(InfoNCELoss.Config(temperature=0.1, same_image_negatives=same)).double()
    # rel=1e-6: log_scale is stored in float32
    assert fn(im, s, ids_t).item() == pytest.approx(infonce_manual(im, s, ids_t, 0.1, same), rel=1e-6)


def test_infonce_gradient_reaches_temperature():
    im, s, ids = batch(seed=7)
    fn = InfoNCELoss(InfoNCELoss.Config(temperature=0.2)).double()
    assert isinstance(fn.log_scale, torch.nn.Parameter) and fn.log_scale.requires_grad
    assert [p for p in fn.parameters()] == [fn.log_scale]
    fn(im, s, ids).backward()
    assert fn.log_scale.grad is not None and fn.log_scale.grad.abs().item() > 0
    # numerical check of d loss / d log_scale
    eps = 1e-6
    with torch.no_grad():
        base = fn.log_scale.item()
        fn.log_scale.fill_(base + eps)
        up = fn(im, s, ids).item()
        fn.log_scale.fill_(base - eps)
        down = fn(im, s, ids).item()
    assert fn.log_scale.grad.item() == pytest.approx((up - down) / (2 * eps), rel=1e-5)


def test_infonce_fixed_temperature_and_max_scale():
    im, s, ids = batch(seed=8)
    fixed = InfoNCELoss(InfoNCELoss.Config(temperature=0.5, learn_temperature=False)).double()
    assert list(fixed.parameters()) == []
    # rel=1e-6 here and below: log_scale is stored in float32
    assert fixed(im, s, ids).item() == pytest.approx(infonce_manual(im, s, ids, 0.5), rel=1e-6)
    clamped = InfoNCELoss(InfoNCELoss.Config(temperature=0.001, max_scale=10.0)).double()
    assert clamped(im, s, ids).item() == pytest.approx(infonce_manual(im, s, ids, 0.1), rel=1e-6)


@pytest.mark.parametrize("cls", [ContrastiveLoss, MaxViolationLoss, InfoNCELoss])
def test_gradients_flow_to_embeddings(cls):
    im, s, ids = batch(seed=9)
    im.requires_grad_(True)
    s.requires_grad_(True)
    fn = cls(cls.Config()).double()
    loss = fn(im, s, ids)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert im.grad.abs().sum() > 0 and s.grad.abs().sum() > 0


def test_max_violation_infonce_warmup_then_hardest_negatives():
    """With warmup_loss = "infonce" the warm-up steps equal InfoNCE, later steps the hardest-negative hinge."""
    import torch.nn.functional as F

    from vsekit.losses import InfoNCELoss, MaxViolationLoss

    g = torch.Generator().manual_seed(3)
    im = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    s = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    ids = torch.arange(6)
    loss = MaxViolationLoss(MaxViolationLoss.Config(warmup_epochs=2.0, warmup_loss="infonce", temperature=0.1))
    nce = InfoNCELoss(InfoNCELoss.Config(temperature=0.1))
    assert torch.allclose(loss(im, s, ids, epoch=1.5), nce(im, s, ids))
    hardest = MaxViolationLoss(MaxViolationLoss.Config())
    assert torch.allclose(loss(im, s, ids, epoch=2.0), hardest(im, s, ids))
    # the warm-up temperature is a parameter the optimizer sees
    assert any(p.requires_grad for p in loss.parameters())


# --------------------------------------------------------------------------
# no-information values: the loss when every score is equal (the stall check compares epochs with them)


def equal_embeddings(b, d=8):
    """Every image and caption is the same unit vector, so every score is equal (1.0)."""
    v = F.normalize(torch.arange(1.0, d + 1, dtype=torch.float64), dim=0)
    return v.expand(b, d).clone(), v.expand(b, d).clone()


NO_INFO_CASES = [
    (ContrastiveLoss, {"margin": 0.2}),
    (ContrastiveLoss, {"margin": 0.5, "same_image_negatives": True}),
    (ContrastiveLoss, {"margin": 0.2, "ncon": 2}),
    (MaxViolationLoss, {"margin": 0.2}),
    (MaxViolationLoss, {"margin": 0.3, "same_image_negatives": True}),
    (InfoNCELoss, {"temperature": 0.07}),
    (InfoNCELoss, {"temperature": 1.0, "same_image_negatives": True}),
]


@pytest.mark.parametrize("cls,options", NO_INFO_CASES)
@pytest.mark.parametrize("ids", [None, SHARED_IDS, [0, 0, 0], [4, 1]])
def test_no_information_value_is_the_loss_on_equal_scores(cls, options, ids):
    ids_t = torch.tensor(ids if ids is not None else list(range(6)))
    im, s = equal_embeddings(len(ids_t))
    fn = cls(cls.Config(**options))
    got = fn(im, s, ids_t, step=100, epoch=5.0).item()
    assert fn.no_information_value(ids_t, step=100, epoch=5.0) == pytest.approx(got, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("b", [2, 7, 128])
def test_no_information_values_by_hand_for_distinct_images(b):
    # B captions of B images: B(B-1) negatives per direction, each costing the margin; the hardest one per
    # positive costs the margin; the softmax over B equal logits is uniform: ln B per direction, averaged
    assert ContrastiveLoss(ContrastiveLoss.Config(margin=0.2)).no_information_value(b) == \
        pytest.approx(2 * b * (b - 1) * 0.2)
    assert MaxViolationLoss(MaxViolationLoss.Config(margin=0.2)).no_information_value(b, step=5, epoch=1.0) == \
        pytest.approx(2 * b * 0.2)
    assert InfoNCELoss(InfoNCELoss.Config()).no_information_value(b) == pytest.approx(math.log(b))
    # the same from the ids
    ids = torch.arange(b)
    assert InfoNCELoss(InfoNCELoss.Config()).no_information_value(ids) == pytest.approx(math.log(b))


def test_no_information_value_with_shared_images_by_hand():
    # SHARED_IDS = 0,0,1,2,2,2: negatives per positive 4,4,5,3,3,3 (22 in all)
    ids = torch.tensor(SHARED_IDS)
    assert ContrastiveLoss(ContrastiveLoss.Config(margin=0.5)).no_information_value(ids) == pytest.approx(2 * 22 * 0.5)
    assert MaxViolationLoss(MaxViolationLoss.Config(margin=0.5)).no_information_value(ids, 9, 9.0) == \
        pytest.approx(2 * 6 * 0.5)
    assert InfoNCELoss(InfoNCELoss.Config()).no_information_value(ids) == \
        pytest.approx((2 * math.log(5) + math.log(6) + 3 * math.log(4)) / 6)


def test_max_violation_no_information_value_follows_the_warmup():
    ids = torch.arange(5)
    summed = MaxViolationLoss(MaxViolationLoss.Config(margin=0.2, warmup_epochs=1.0))
    assert summed.no_information_value(ids, step=3, epoch=0.5) == pytest.approx(2 * 5 * 4 * 0.2)
    assert summed.no_information_value(ids, step=30, epoch=1.0) == pytest.approx(2 * 5 * 0.2)
    nce = MaxViolationLoss(MaxViolationLoss.Config(margin=0.2, warmup_steps=10, warmup_loss="infonce"))
    assert nce.no_information_value(ids, step=9, epoch=0.0) == pytest.approx(math.log(5))
    assert nce.no_information_value(ids, step=10, epoch=0.0) == pytest.approx(2 * 5 * 0.2)
    im, s = equal_embeddings(5)
    for step, epoch in ((9, 0.0), (10, 0.0)):
        assert nce(im, s, ids, step=step, epoch=epoch).item() == \
            pytest.approx(nce.no_information_value(ids, step, epoch), rel=1e-9)


def test_stall_advice_names_the_warmup_only_where_it_is_missing():
    assert "warm-up" in MaxViolationLoss(MaxViolationLoss.Config()).stall_advice()
    assert "warm-up" not in InfoNCELoss(InfoNCELoss.Config()).stall_advice()
    assert "lr" in InfoNCELoss(InfoNCELoss.Config()).stall_advice()
