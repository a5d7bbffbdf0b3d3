"""Named pretrained models shipped with diffcomm (CompressAI ``zoo`` style).

Each model is ``weights/NAME.safetensors`` plus ``weights/NAME.json`` (architecture config,
recipe, training record and measured metrics). Load one by name; the weights are package data,
so nothing is downloaded.

Example:
    >>> from diffcomm import zoo
    >>> {"fmnist-prior", "fmnist-classifier"} <= set(zoo.list_models())
    True
    >>> prior = zoo.load("fmnist-prior")
    >>> type(prior).__name__, prior.sigma_min, prior.sigma_max
    ('EDMDenoiser', 0.002, 80.0)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from diffcomm.errors import DiffcommError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def _build_prior(config: dict[str, Any]) -> nn.Module:
    from diffcomm.diffusion.precond import EDMDenoiser
    from diffcomm.diffusion.unet import UNet, UNetConfig

    pre = config.get("preconditioning", {})
    return EDMDenoiser(UNet(UNetConfig.from_dict(config["model"])), sigma_data=pre.get("sigma_data", 0.5))


def _build_flow(config: dict[str, Any]) -> nn.Module:
    from diffcomm.diffusion.flow import FlowDenoiser
    from diffcomm.diffusion.unet import UNet, UNetConfig

    pre = config.get("preconditioning", {})
    return FlowDenoiser(UNet(UNetConfig.from_dict(config["model"])), sigma_min=pre.get("sigma_min", 0.002),
                        sigma_max=pre.get("sigma_max", 80.0))


def _build_consistency(config: dict[str, Any]) -> nn.Module:
    from diffcomm.diffusion.consistency import ConsistencyDenoiser
    from diffcomm.diffusion.unet import UNet, UNetConfig

    pre = config.get("preconditioning", {})
    return ConsistencyDenoiser(UNet(UNetConfig.from_dict(config["model"])), sigma_data=pre.get("sigma_data", 0.5),
                               sigma_min=pre.get("sigma_min", 0.002), sigma_max=pre.get("sigma_max", 80.0))


def _build_classifier(config: dict[str, Any]) -> nn.Module:
    from diffcomm.metrics.classifier import Classifier, ClassifierConfig

    return Classifier(ClassifierConfig.from_dict(config["model"]))


def _build_jscc(config: dict[str, Any]) -> nn.Module:
    from diffcomm.transmit.deepjscc import build_deepjscc

    return build_deepjscc(config)


def _build_taskjscc(config: dict[str, Any]) -> nn.Module:
    from diffcomm.scenarios.taskjscc import build_taskjscc

    return build_taskjscc(config)


def _build_autoencoder(config: dict[str, Any]) -> nn.Module:
    from diffcomm.diffusion.autoencoder import build_autoencoder

    return build_autoencoder(config)


def _build_latent_prior(config: dict[str, Any]) -> nn.Module:
    from diffcomm.diffusion.autoencoder import build_latent_prior

    return build_latent_prior(config)


def _build_conditional(config: dict[str, Any]) -> nn.Module:
    from diffcomm.diffusion.conditional import build_conditional

    return build_conditional(config)


def _build_bridge(config: dict[str, Any]) -> nn.Module:
    from diffcomm.diffusion.bridge import build_bridge

    return build_bridge(config)


# kind -> builder(config) -> module with matching state_dict. Extend by adding an entry.
BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {
    "prior": _build_prior,
    "flow": _build_flow,
    "consistency": _build_consistency,
    "classifier": _build_classifier,
    "jscc": _build_jscc,
    "taskjscc": _build_taskjscc,
    "autoencoder": _build_autoencoder,  # latent diffusion's first stage (not a prior)
    "latent-prior": _build_latent_prior,  # a LatentPrior: a prior on a latent, not in PRIOR_KINDS (pixel priors)
    "conditional": _build_conditional,    # a denoiser conditioned on the channel output (the cdm receiver's)
    "bridge": _build_bridge,              # an image-to-image bridge network (the i2sb receiver's)
}


# model kinds that are priors in the denoiser interface (diffusion, flow matching, consistency models)
PRIOR_KINDS = ("prior", "flow", "consistency")


def list_models(weights_dir: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Name -> config (JSON beside the weights) of every shipped model."""
    folder = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    out = {}
    from diffcomm.checks import read_json_file

    for cfg_path in sorted(folder.glob("*.json")):
        if cfg_path.with_suffix(".safetensors").exists():
            out[cfg_path.stem] = read_json_file(cfg_path, "model config")
    return out


def model_config(name: str) -> dict[str, Any]:
    models = list_models()
    if name not in models:
        raise DiffcommError(f"unknown model '{name}'; shipped models: {', '.join(models) or 'none'}")
    return models[name]


def load_weights(path: str | Path, config: dict[str, Any] | None = None) -> nn.Module:
    """Build the architecture named by ``config`` (or the JSON beside ``path``) and load ``path``.

    Raises a one-line :class:`DiffcommError` for a missing/corrupt file or weights that belong to
    another architecture. Never unpickles anything.
    """
    path = Path(path)
    if config is None:
        cfg_path = path.with_suffix(".json")
        if not cfg_path.is_file():
            raise DiffcommError(f"no config {cfg_path} beside {path}; weights need their JSON config")
        from diffcomm.checks import read_json_file

        config = read_json_file(cfg_path, "model config")
    kind = config.get("kind")
    if kind not in BUILDERS:
        raise DiffcommError(f"{path}: unknown model kind {kind!r}; known kinds: {', '.join(BUILDERS)}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DiffcommError(f"cannot read weights {path}: {exc}") from None
    if not isinstance(config.get("model"), dict):
        raise DiffcommError(f"{path}: its config has no [model] table; weights need the config they were trained with")
    model = BUILDERS[kind](config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shape = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or bad_shape:
        detail = (missing or unexpected or bad_shape)[0]
        raise DiffcommError(f"{path} does not match the '{kind}' architecture in its config "
                            f"(first mismatch: {detail}); use weights trained for this config")
    model.load_state_dict(state)
    model.eval().requires_grad_(False)
    model.zoo_config = config  # type: ignore[attr-defined]
    return model


_CACHE: dict[str, nn.Module] = {}


def load(name: str) -> nn.Module:
    """Load a shipped model by name (eval mode, no grad; cached per process)."""
    if name not in _CACHE:
        config = model_config(name)
        _CACHE[name] = load_weights(WEIGHTS_DIR / f"{name}.safetensors", config)
    return _CACHE[name]


def weights_digest(name: str) -> str:
    """First 16 hex digits of the SHA-256 of a shipped model's weights file (cached per process).

    Results record the digests of the models they used, so a rerun after a model is reshipped
    does not mix records from two different sets of weights.
    """
    path = WEIGHTS_DIR / f"{name}.safetensors"
    key = str(path.resolve())            # by file: a zoo folder swapped in (tests, a user's copy) never reuses a digest
    if key not in _DIGESTS:
        if not path.is_file():
            raise DiffcommError(f"unknown model '{name}'; shipped models: {', '.join(list_models()) or 'none'}")
        _DIGESTS[key] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return _DIGESTS[key]


_DIGESTS: dict[str, str] = {}


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["BUILDERS", "WEIGHTS_DIR", "list_models", "load", "load_weights", "model_config", "weights_digest"]
