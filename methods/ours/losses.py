"""The loss terms of ``ours`` (docs/training.md), vectorised over the batch, without host syncs.

Shapes: B images, K parts, C (or D) signal channels, H x W pixels (the 256x256 training resolution).

* ``assign`` is the *masked* soft assignment ``a = m * softmax_k(up(logits))``, shape (B, K, H, W)
  (build it with :func:`masked_assignment`);
* ``mask`` is the foreground mask m, shape (B, 1, H, W) (or (B, H, W));
* ``features`` / ``signal`` is a (B, C, H, W) tensor: the masked VGG features ``f = m * phi`` for L_f and the
  prototypes, the (un-masked) Lab image for L_v.

The reference builds (B, K, C, H, W) products per image in a Python loop; here the soft within-part variance
is expanded into sufficient statistics (sums of ``w g^2``, ``w g`` and ``w`` with ``w = a m``) obtained from
one batched matrix product, so no tensor larger than the inputs is formed. The statistics are accumulated in
float32 with autocast disabled (a bf16 expansion would cancel catastrophically); under bf16 autocast only the
network's outputs carry bf16 error.

The four terms and their reductions (total ``L = 5.7e3 L_e + 5 L_f + 30 L_v + 2.3e3 L_c``):

* L_f = ``feature_loss(assign, f, mask)`` = **sum** over the batch of :func:`region_variance` (the reference
  quirk; ``reduction="mean"`` is the fix); :func:`feature_terms` returns L_f and the prototypes of L_c from a
  single read of the features;
* L_v = ``color_loss(assign, lab, mask)`` = batch **mean** of :func:`region_variance` on the Lab image;
* L_c = :func:`contrastive_loss` on :func:`part_prototypes` of the masked features;
* L_e = :func:`equivariance_loss`.

Randomness (the positive draw of L_c) can be drawn beforehand with :func:`sample_positive_images` and passed
in, so that a ``torch.compile(fullgraph=True)`` step contains no generator calls (dynamo cannot trace them).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

__all__ = [
    "masked_assignment",
    "part_prototypes",
    "region_variance",
    "feature_loss",
    "feature_terms",
    "color_loss",
    "sample_positive_images",
    "contrastive_loss",
    "equivariance_loss",
]


def _no_autocast(t: torch.Tensor):
    """Disable autocast for the statistics (float32 accumulation), on whatever device ``t`` lives."""
    if torch.is_autocast_enabled(t.device.type):
        return torch.autocast(t.device.type, enabled=False)
    return contextlib.nullcontext()


def _acc(t: torch.Tensor) -> torch.Tensor:
    """float64 stays float64 (tests); everything else is accumulated in float32."""
    return t if t.dtype == torch.float64 else t.float()


def _mask4(mask: torch.Tensor) -> torch.Tensor:
    return mask.unsqueeze(1) if mask.ndim == 3 else mask


def masked_assignment(logits: torch.Tensor, mask: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``a = m * softmax_k(up(logits))``: bilinear upsampling with ``align_corners=True`` to ``size``
    (default: the mask's size), softmax over the K channels, times the (B, 1, H, W) foreground mask."""
    mask = _mask4(mask)
    size = tuple(mask.shape[-2:]) if size is None else size
    up = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
    return torch.softmax(up, dim=1) * mask


def part_prototypes(assign: torch.Tensor, features: torch.Tensor, *, eps: float = 1e-7) -> torch.Tensor:
    """Soft part means ``z_{b,k} = sum_u a f / (sum_u a + eps)``, shape (B, K, C) (as L_c of the reference, eps 1e-7).

    ``features`` are the masked features f = m * phi, as in the reference. With ``eps=1e-5`` this is the mu
    of the region variance.
    """
    with _no_autocast(assign):
        a = _acc(assign).flatten(2)                              # (B, K, N)
        g = _acc(features).flatten(2)                            # (B, C, N)
        sums = torch.bmm(a, g.transpose(1, 2))                   # (B, K, C)
        return sums / (a.sum(dim=2, keepdim=True) + eps)


def region_variance(assign: torch.Tensor, signal: torch.Tensor, mask: torch.Tensor, *,
                    eps_mean: float = 1e-5, eps_norm: float = 1e-5, center: bool = True) -> torch.Tensor:
    """The soft within-part variance V, one value per image, shape (B,):

        mu_k = sum_u a_k g_u / (sum_u a_k + eps_mean)
        V    = sum_k sum_d sum_u a_k m (g_d - mu_kd)^2 / (sum_u m + eps_norm)

    Computed from sufficient statistics with ``w = a m``: ``sum_u w (g - mu)^2 = sum w g^2 - 2 mu . sum w g +
    |mu|^2 sum w``. With ``center`` (default) the signal is first shifted by its per-image channel mean (the
    eps of mu is compensated exactly, so V is unchanged) to keep the float32 expansion free of cancellation
    for signals far from zero (Lab L in [0, 100]); it costs one (B, D, H, W) temporary -- pass
    ``center=False`` for large-D, zero-centred-enough signals (e.g. VGG features) to save memory.
    Gradients flow through ``assign`` (both directly and through mu) and ``signal``.
    """
    return _variance_and_part_sums(assign, signal, mask, eps_mean, eps_norm, center)[0]


def _variance_and_part_sums(assign, signal, mask, eps_mean, eps_norm, center):
    """V (B,), plus ``sum_u a g`` (B, K, D) and ``sum_u a`` (B, K, 1) of the un-shifted signal."""
    mask = _mask4(mask)
    with _no_autocast(assign):
        a = _acc(assign).flatten(2)                                  # (B, K, N)
        m = _acc(mask).flatten(2)                                    # (B, 1, N)
        g = _acc(signal).flatten(2)                                  # (B, D, N)
        w = a * m                                                    # (B, K, N)
        a_sum = a.sum(dim=2, keepdim=True)                           # (B, K, 1)
        if center:
            c = g.detach().mean(dim=2, keepdim=True)                 # (B, D, 1)
            g = g - c
        k = a.shape[1]
        # One batched product gives sum_u a g and sum_u w g; a second, thin one gives sum_u w |g|^2.
        both = torch.bmm(torch.cat([a, w], dim=1), g.transpose(1, 2))  # (B, 2K, D)
        sum_ag, sum_wg = both[:, :k], both[:, k:]
        sum_wgg = torch.bmm(w, g.square().sum(dim=1, keepdim=True).transpose(1, 2)).squeeze(2)  # (B, K)
        mu = sum_ag / (a_sum + eps_mean)                             # (B, K, D), of the shifted signal
        if center:
            # mu(g) = mu(g - c) + c S/(S + eps)  =>  g - mu(g) = (g - c) - [mu(g - c) - c eps/(S + eps)]
            mu = mu - c.transpose(1, 2) * (eps_mean / (a_sum + eps_mean))
            sum_ag = sum_ag + a_sum * c.transpose(1, 2)              # back to sums of the raw signal
        w_sum = w.sum(dim=2)                                         # (B, K)
        per_part = sum_wgg - 2.0 * (mu * sum_wg).sum(dim=2) + mu.square().sum(dim=2) * w_sum
        variance = per_part.sum(dim=1) / (m.sum(dim=(1, 2)) + eps_norm)
        return variance, sum_ag, a_sum


def _reduce(v: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "sum":
        return v.sum()
    if reduction == "mean":
        return v.mean()
    raise ValueError(f"reduction must be 'sum' (reference) or 'mean', got {reduction!r}")


def feature_terms(assign: torch.Tensor, features: torch.Tensor, mask: torch.Tensor, *, reduction: str = "sum",
                  center: bool = False, eps_proto: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_f, prototypes)`` from one pass over the masked features: the same values as
    ``feature_loss(assign, features, mask)`` and ``part_prototypes(assign, features)``, but the (B, C, H, W)
    features are read once for both (they are the largest tensor of a training step)."""
    v, sum_ag, a_sum = _variance_and_part_sums(assign, features, mask, 1e-5, 1e-5, center)
    return _reduce(v, reduction), sum_ag / (a_sum + eps_proto)


def feature_loss(assign: torch.Tensor, features: torch.Tensor, mask: torch.Tensor, *,
                 reduction: str = "sum", center: bool = False) -> torch.Tensor:
    """L_f: :func:`region_variance` of the masked features f = m * phi, **summed** over the batch as in
    the reference (``reduction="sum"``, the paper preset); ``"mean"`` makes it independent of the batch size."""
    return _reduce(region_variance(assign, features, mask, center=center), reduction)


def color_loss(assign: torch.Tensor, lab: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L_v: batch mean of :func:`region_variance` of the un-jittered Lab image (or RGB - 128)."""
    return region_variance(assign, lab, mask, center=True).mean()


def sample_positive_images(batch: int, parts: int, *, legacy_positive: bool = True,
                           generator: torch.Generator | None = None,
                           device: torch.device | str | None = None) -> torch.Tensor:
    """For every anchor (b, k) (row-major, shape (B*K,)), the image index of its positive (same part k).

    The candidates are the other B-1 images in increasing order. ``legacy_positive=True`` reproduces the
    reference's ``randint(1, B-1)``: positions 1..B-2 only, so the lowest-indexed other image is never drawn and
    B < 3 is impossible (the reference crashes there). ``False`` draws uniformly from all B-1 candidates.
    Drawn on ``device`` from ``generator`` (which must live on that device), without host syncs.
    """
    low = 1 if legacy_positive else 0
    if batch - 1 <= low:
        need = 3 if legacy_positive else 2
        why = (" the reference draws the positive with randint(1, B-1), which never picks the first other image "
               "and has an empty range for B=2" if legacy_positive else "")
        raise ValueError(
            f"contrastive loss needs a batch of at least {need} images (got {batch}):{why}; use a batch size >= "
            f"{need}" + (" or legacy_positive=False (which needs B >= 2)" if legacy_positive else "")
        )
    if generator is not None and device is None:
        device = generator.device
    position = torch.randint(low, batch - 1, (batch * parts,), generator=generator, device=device)
    image = torch.arange(batch, device=position.device).repeat_interleave(parts)
    return position + (position >= image).long()  # skip the anchor's own image


def contrastive_loss(prototypes: torch.Tensor, temperature: float, *, legacy_positive: bool = True,
                     generator: torch.Generator | None = None,
                     positives: torch.Tensor | None = None) -> torch.Tensor:
    """L_c: InfoNCE over the (B*K) L2-normalised part prototypes, one random positive per anchor.

    For anchor (b, k): positive = prototype (b+, k) of another image (see :func:`sample_positive_images`);
    negatives = all B(K-1) prototypes (b', j) with j != k, the anchor's own image included. Loss = mean over
    anchors of ``-log softmax`` of the positive among [positive, negatives], logits = cosine / temperature.
    ``generator`` (on the prototypes' device) makes the positive draw reproducible. ``positives`` takes a draw
    of :func:`sample_positive_images` made beforehand instead (e.g. outside a ``torch.compile``d step: dynamo
    cannot trace explicit generators); then ``legacy_positive`` and ``generator`` are not used.
    """
    b, k, _ = prototypes.shape
    if positives is None:
        pos_image = sample_positive_images(b, k, legacy_positive=legacy_positive, generator=generator,
                                           device=prototypes.device)
    else:
        pos_image = positives
    with _no_autocast(prototypes):
        z = F.normalize(_acc(prototypes), dim=2, eps=1e-12).reshape(b * k, -1)
        logits = (z @ z.t()) / temperature                                # (BK, BK), column index b'*K + j
        part = torch.arange(k, device=z.device).repeat(b)                 # part index of every row/column
        pos_col = pos_image * k + part
        pos = logits.gather(1, pos_col.unsqueeze(1))                      # (BK, 1)
        negatives = logits.masked_fill(part.unsqueeze(0) == part.unsqueeze(1), float("-inf"))
        lse = torch.logsumexp(torch.cat([pos, negatives], dim=1), dim=1)
        return (lse - pos.squeeze(1)).mean()


def equivariance_loss(logits_on_warped: torch.Tensor, warped_logits: torch.Tensor, warped_mask: torch.Tensor, *,
                      eps: float = 1e-7) -> torch.Tensor:
    """L_e: KL(q || p) per pixel summed over the K channels, weighted by the warped mask, averaged over
    the warped foreground, mean over the batch.

    ``logits_on_warped``: logits of the network on T(image), upsampled, (B, K, H, W) -> p = softmax;
    ``warped_logits``: T applied to the main branch's upsampled logits -> q = softmax of the *detached* tensor
    (no gradient ever reaches the target); ``warped_mask``: T(m), (B, 1, H, W), soft at the borders.
    """
    mask = _mask4(warped_mask)
    with _no_autocast(logits_on_warped):
        log_p = torch.log_softmax(_acc(logits_on_warped), dim=1)
        log_q = torch.log_softmax(_acc(warped_logits.detach()), dim=1)
        kl = (log_q.exp() * (log_q - log_p)).sum(dim=1, keepdim=True)     # (B, 1, H, W)
        m = _acc(mask)
        per_image = (kl * m).flatten(1).sum(1) / (m.flatten(1).sum(1) + eps)
        return per_image.mean()
