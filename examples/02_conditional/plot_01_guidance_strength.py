r"""
Guidance strength: classifier-free and classifier guidance
==========================================================

A class-conditional diffusion model can be pushed towards its class harder than the data itself
does. **Classifier-free guidance** (Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022,
eq. 6) mixes the conditional and the unconditional prediction of one network,
:math:`\tilde\varepsilon = (1+w)\,\varepsilon(x\mid c) - w\,\varepsilon(x\mid\varnothing)`; since
the denoiser :math:`D = x - \sigma\varepsilon` is affine in :math:`\varepsilon`, this is
:math:`\tilde D = (1+w)\,D(x;\sigma,c) - w\,D(x;\sigma,\varnothing)`
(:func:`diffcomm.diffusion.guidance.cfg_denoiser`). The shipped prior ``fmnist-prior`` was
trained with 10 % label dropout, so the same network is the unconditional model when it is given
the null class (label 10); :func:`diffcomm.diffusion.sampling.sample_prior` (and
``diffcomm sample --label L --guidance w``) batch both calls. :math:`w = 0` is the plain
conditional model.

**Classifier guidance** (Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis",
NeurIPS 2021, eq. 10 / Alg. 1) instead adds the gradient of a classifier to the score of an
unconditional model, :math:`\nabla\log p(x_\sigma) + s\,\nabla\log p_\phi(c\mid x_\sigma)`. The
library's ``SemanticGuidance`` (:mod:`diffcomm.receivers.semantic`) evaluates the classifier on
Tweedie's estimate :math:`\hat x_0` (universal guidance, Bansal et al. 2023), so a classifier
trained on clean images works at every noise level; the DPS-family receivers add it to their data
term (the ``semantic=`` argument of :func:`diffcomm.receivers.dps.dps_receiver`), and
:func:`diffcomm.receivers.guidance.gradient_guided` with no data term turns it into a guided
denoiser for plain sampling. Both knobs trade **diversity** for **fidelity to the class**.
"""

import os

import matplotlib.pyplot as plt
import torch

from diffcomm import zoo
from diffcomm.data import FASHION_MNIST_CLASSES, get_dataset
from diffcomm.diffusion.sampling import sample_prior
from diffcomm.diffusion.schedules import karras_sigmas
from diffcomm.metrics.classifier import predict
from diffcomm.receivers.guidance import CountingPrior, gradient_guided, run_sampler
from diffcomm.receivers.semantic import SemanticGuidance

FAST = os.environ.get("DIFFCOMM_GALLERY_FAST") == "1"  # the test suite's quick run

prior = zoo.load("fmnist-prior")
classifier = zoo.load("fmnist-classifier")
classes = [2, 6]  # pullover and shirt: two upper-body classes that are easy to confuse
per_class = 3 if FAST else 6
steps = 6 if FAST else 10
cfg_weights = [0.0, 3.0] if FAST else [0.0, 1.0, 2.0, 4.0, 8.0]
clf_scales = [0.0, 10.0] if FAST else [0.0, 3.0, 10.0, 30.0]
labels = torch.tensor(classes).repeat_interleave(per_class)


def accuracy_and_diversity(x, y):
    """Accuracy of the shipped classifier on the intended classes ``y``, and the mean pairwise RMS
    pixel distance between images of the same class (0 = all samples identical)."""
    acc = float((predict(classifier, x)[0].argmax(1) == y).float().mean())
    n_pix = x[0].numel()
    div = torch.stack([torch.pdist(x[y == c].flatten(1)).mean() / n_pix ** 0.5 for c in classes]).mean()
    return acc, float(div)


# %%
# Classifier-free guidance
# ------------------------
# DPM-Solver++(2M) on a short grid of noise levels (10 here), the same seed (so the same initial noise) for every
# weight; each row is one weight :math:`w`, the columns are pullovers then shirts. A CFG step costs
# two network evaluations per image (conditional and null class), hence the doubled NFE.

cfg_samples, cfg_scores = {}, {}
for w in cfg_weights:
    x, nfe = sample_prior(prior, len(labels), sampler="dpmpp_2m", steps=steps, labels=labels, guidance=w, seed=0)
    cfg_samples[w], cfg_scores[w] = x, (*accuracy_and_diversity(x, labels), nfe)


def show_rows(samples, scores, name):
    fig, axes = plt.subplots(len(samples), len(labels), figsize=(0.75 * len(labels) + 1.4, 0.8 * len(samples) + 0.5),
                             layout="constrained", squeeze=False)
    for i, (strength, x) in enumerate(samples.items()):
        acc, div, nfe = scores[strength]
        for j in range(len(labels)):
            ax = axes[i, j]
            ax.imshow(x[j, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(FASHION_MNIST_CLASSES[int(labels[j])], fontsize=7)
        axes[i, 0].set_ylabel(f"{name}={strength:g}\nacc {acc:.0%}\ndiv {div:.2f}", fontsize=7, rotation=0,
                              ha="right", va="center")
    return fig


fig = show_rows(cfg_samples, cfg_scores, "w")
fig.suptitle(f"classifier-free guidance, fmnist-prior, {steps} DPM-Solver++ levels", fontsize=9)
plt.show()

# %%
# Classifier guidance on the unconditional model
# ----------------------------------------------
# The prior run with the null class (``class_labels=None``) is the unconditional model. With
# ``SemanticGuidance(classifier, lam=s, labels=c)`` as the only loss and the weight
# :math:`\sigma^2`, the guided denoiser is
# :math:`\hat x_0 - s\,\sigma^2\,\nabla_{x_\sigma}\bigl[-\log p_\phi(c\mid\hat x_0)\bigr]`, i.e. the
# score :math:`(\tilde D - x)/\sigma^2` gains :math:`s\,\nabla\log p_\phi(c\mid\hat x_0)`: eq. 10
# with scale :math:`s`. One network evaluation per step, plus a backward pass through the U-Net
# and the classifier.

sigmas = karras_sigmas(steps, prior.sigma_min, prior.sigma_max)
clf_samples, clf_scores = {}, {}
for s in clf_scales:
    gen = torch.Generator().manual_seed(0)
    counted = CountingPrior(prior)
    guided = gradient_guided(counted, lambda x0: x0.new_zeros(x0.shape[0]), lambda sigma: sigma ** 2,
                             extra_loss=SemanticGuidance(classifier, lam=s, labels=labels).term(prior))
    x_start = torch.randn((len(labels), 1, 28, 28), generator=gen) * sigmas[0]
    x = prior.to_pixels(run_sampler("dpmpp_2m", guided, x_start, sigmas, gen)).clamp(0, 1)
    clf_samples[s], clf_scores[s] = x, (*accuracy_and_diversity(x, labels), counted.nfe)

fig = show_rows(clf_samples, clf_scores, "s")
fig.suptitle("classifier guidance towards the column's class (fmnist-classifier on x̂0), unconditional fmnist-prior",
             fontsize=9)
plt.show()

# %%
# Fidelity against diversity
# --------------------------
# Accuracy is the shipped classifier's top-1 accuracy on the intended class; diversity is the mean
# RMS pixel distance between two samples of the same class. The dotted lines are the same two
# numbers for real Fashion-MNIST test images of these classes (the classifier itself mistakes
# some real shirts). At :math:`s = 0` the classifier-guided samples are plain unconditional
# samples of any class, so their "same class" pairs are not of one class and their diversity is
# not comparable with the others.

test = get_dataset("fashion-mnist", "test")
test_images, test_labels = test[:2]
real = torch.cat([test_images[test_labels == c][:100] for c in classes])
real_labels = torch.tensor(classes).repeat_interleave(100)
real_acc, real_div = accuracy_and_diversity(real, real_labels)

fig, (ax_acc, ax_div, ax_trade) = plt.subplots(1, 3, figsize=(11, 3.4), layout="constrained")
for scores, name, marker in [(cfg_scores, "classifier-free, w", "o"), (clf_scores, "classifier, s", "s")]:
    strength = list(scores)
    acc = [scores[k][0] for k in strength]
    div = [scores[k][1] for k in strength]
    ax_acc.plot(strength, acc, marker=marker, label=name)
    ax_div.plot(strength, div, marker=marker, label=name)
    ax_trade.plot(div, acc, marker=marker, label=name)
    for k, d, a in zip(strength, div, acc):
        ax_trade.annotate(f"{k:g}", (d, a), textcoords="offset points", xytext=(4, -8), fontsize=7)
for ax in (ax_acc, ax_div):
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("guidance strength (w or s)")
ax_acc.axhline(real_acc, ls=":", color="gray", label="real test images")
ax_div.axhline(real_div, ls=":", color="gray", label="real test images")
ax_acc.set_ylabel("classifier accuracy on the intended class")
ax_div.set_ylabel("mean pairwise RMS distance")
ax_trade.set_xlabel("diversity (mean pairwise RMS distance)")
ax_trade.set_ylabel("accuracy")
ax_trade.set_title("the trade-off (labels: strength)", fontsize=9)
ax_acc.legend(fontsize=7)
ax_div.legend(fontsize=7)
plt.show()

print(f"{len(labels)} samples per strength ({per_class} per class); real test images: accuracy {real_acc:.2f}, "
      f"diversity {real_div:.3f}")
for name, scores in [("CFG w", cfg_scores), ("classifier s", clf_scores)]:
    for k, (acc, div, nfe) in scores.items():
        print(f"{name}={k:g}: accuracy {acc:.2f}, diversity {div:.3f}, {nfe} NFE per image")

# %%
# Classifier-free guidance behaves as Ho & Salimans describe: as :math:`w` grows, more samples are
# recognised as the class asked for, while the samples of one class move closer together (lower
# pixel diversity) and, at large weights, turn high-contrast with exaggerated, unnatural patterns:
# once the accuracy reaches its ceiling, a larger weight only makes the images worse.
# Classifier guidance also raises the accuracy quickly, but read that number with care: the
# classifier that guides is the one that scores, so strong guidance can satisfy it with
# adversarial strokes that a person would not call a shirt, and the "diversity" then grows because
# of those artefacts, not because the samples got more varied (compare the rows of the second
# grid). A guide judged by an independent classifier, or by a distribution metric such as FD-cls
# on many samples, would tell the two effects apart; the few samples here only show the trend.
# The same CFG weight is a receiver option where a model was trained with condition dropout:
# ``cdm``'s ``cfg_weight`` guides on the received signal instead of a class (see the conditional
# decoder example).
