"""Semantic (classifier) guidance that can be combined with any guided receiver.

Classifier guidance (Dhariwal & Nichol 2021, eq. 10/Alg. 1) applied to Tweedie's estimate as in
universal guidance (Bansal et al. 2023): the extra loss term λ · (−log p_φ(c | x̂0)) is added to
the receiver's data-consistency loss, so its step is λ·γ_i with the receiver's own annealed
γ_i (the "γ/λ scheduling"). The class c is either known side information (GESCO-style
transmission of the label) or, when ``labels`` is None, the classifier's own decision on the
current estimate (self-guidance towards the most probable class).

Example:
    >>> import torch
    >>> from diffcomm import zoo
    >>> from diffcomm.pipeline import build_link
    >>> link = build_link("gaussian", (1, 28, 28), "1/16", "awgn", snr_db=10.0)
    >>> gen = torch.Generator().manual_seed(0)
    >>> rx = link.transmit(torch.rand(2, 1, 28, 28), generator=gen)
    >>> from diffcomm.receivers.dps import dps_receiver
    >>> sem = SemanticGuidance(zoo.load("fmnist-classifier"), lam=0.5)
    >>> res = dps_receiver(link, rx, zoo.load("fmnist-prior"), steps=4, semantic=sem, generator=gen)
    >>> res.x_hat.shape, res.nfe
    (torch.Size([2, 1, 28, 28]), 4)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from diffcomm.errors import DiffcommError
from diffcomm.receivers.base import Option


class SemanticGuidance:
    """Classifier guidance as an extra loss term for a gradient-guided receiver (``semantic=`` of dps, hifi, blind).

    ``classifier``: pixels (B, C, H, W) in [0, 1] -> class logits (e.g. ``zoo.load("fmnist-classifier")``);
    ``lam``: the weight λ of −log p_φ(c | x̂0) relative to the receiver's data term; ``labels``: the known
    classes (B,), or None to guide towards the classifier's own decision on the current estimate.
    :meth:`term` returns the loss ``(x0_model, x) -> (B,)`` the receiver adds to its data-consistency loss.
    """

    def __init__(self, classifier, lam: float = 1.0, labels: torch.Tensor | None = None):
        self.classifier = classifier
        self.lam = float(lam)
        self.labels = labels

    def term(self, prior) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        def loss(x0_model: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            logits = self.classifier(prior.to_pixels(x0_model).clamp(0, 1))
            target = self.labels if self.labels is not None else logits.detach().argmax(1)
            return self.lam * F.cross_entropy(logits, target, reduction="none")
        return loss


SEMANTIC_OPTION = Option(float, 0, 100, optional=True, objects=(SemanticGuidance,),
                         help="classifier-guidance weight λ with the shipped classifier (decode/CLI); 0 or none: off")


def semantic_loss(semantic, prior) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """The extra loss of a receiver's ``semantic`` argument: None (or 0) -> no term; a :class:`SemanticGuidance` ->
    its :meth:`~SemanticGuidance.term`. A bare number is the *option* form, which :func:`diffcomm.pipeline.decode`
    turns into guidance with the shipped classifier; a receiver function given one directly refuses it."""
    if not semantic:  # None or a zero weight
        return None
    if isinstance(semantic, SemanticGuidance):
        return semantic.term(prior)
    raise DiffcommError(f"semantic must be a SemanticGuidance(classifier, lam) here, got {semantic!r}; a weight "
                        f"alone (semantic={semantic!r}) works through diffcomm.pipeline.decode or --option semantic=λ")
