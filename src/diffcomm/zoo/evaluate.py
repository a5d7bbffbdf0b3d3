"""Measure shipped models and record the numbers beside their weights (``diffcomm zoo ship``).

- **prior**: class-conditional samples (CFG weight stated) classified by the shipped classifier;
  FD-cls and KID-cls of unconditional samples against the test set, beside the same statistics
  between real test images (two halves, and a same-size real subset) as the reference floor;
  nearest-neighbour L2 distances of samples to the training set, beside those of real test
  images (samples that copy training images would sit far below the test reference).
  Priors of other datasets (natural-photo patches, photo folders): test-patch denoising PSNR at
  several σ and nearest-neighbour distances of samples (:func:`evaluate_patch_prior`).
- **classifier**: test accuracy.
- **jscc**: PSNR/SSIM on the test set at 0/5/10/20 dB over its training channel.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from diffcomm.errors import DiffcommError
from diffcomm.zoo import PRIOR_KINDS

LATENT_KINDS = ("autoencoder", "latent-prior")  # latent diffusion kinds (diffcomm.diffusion.autoencoder)


def nearest_neighbour_distances(queries: torch.Tensor, reference: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """L2 distance (pixels in [0, 1]) from each query image to its nearest reference image."""
    q = queries.flatten(1).double()
    r = reference.flatten(1).double()
    r2 = r.pow(2).sum(1)
    out = []
    for i in range(0, len(q), chunk):
        qi = q[i:i + chunk]
        d2 = qi.pow(2).sum(1, keepdim=True) + r2[None] - 2 * qi @ r.T
        out.append(d2.min(1).values.clamp_min(0).sqrt())
    return torch.cat(out).float()


def evaluate_prior(prior, classifier, n: int = 1000, guidance: float = 1.0, steps: int = 18, seed: int = 0,
                   grid_path: str | Path | None = None, sampler: str = "heun",
                   sample_fn=None) -> dict[str, Any]:
    """Sample quality of a Fashion-MNIST prior: CFG accuracy, FD-cls / KID-cls with the real floor, copying.

    ``sample_fn(n, labels=, guidance=, steps=, seed=) -> (pixels, nfe)`` replaces
    :func:`~diffcomm.diffusion.sampling.sample_prior` for priors that sample otherwise (a latent prior).
    """
    from diffcomm.data import get_dataset, save_grid
    from diffcomm.diffusion.sampling import sample_prior
    from diffcomm.metrics.classifier import predict
    from diffcomm.metrics.distribution import frechet_distance, kernel_distance

    test = get_dataset("fashion-mnist", "test")
    train = get_dataset("fashion-mnist", "train")
    t0 = time.time()
    labels = torch.arange(n) % 10
    def default_sample(count: int, **kw: Any) -> tuple[torch.Tensor, int]:
        return sample_prior(prior, count, sampler=sampler, **kw)

    sample = sample_fn or default_sample
    cond, nfe_cond = sample(n, labels=labels, guidance=guidance, steps=steps, seed=seed)
    uncond, nfe_uncond = sample(n, steps=steps, seed=seed + 1)
    seconds = time.time() - t0
    logits, _ = predict(classifier, cond)
    _, f_uncond = predict(classifier, uncond)
    _, f_test = predict(classifier, test.images)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(f_test), generator=g)
    half = len(f_test) // 2
    real_a, real_b = f_test[perm[:n]], f_test[perm[n:]]
    nn_samples = nearest_neighbour_distances(uncond, train.images)
    nn_test = nearest_neighbour_distances(test.images[perm[:n]], train.images)
    if grid_path:  # one row per class, the first ten samples of each
        rows = [cond[(labels == c).nonzero().flatten()[:10]] for c in range(10)]
        save_grid(grid_path, torch.cat(rows), nrow=10)
    return {
        "samples": n, "sampler": sampler, "steps": steps, "cfg_weight": guidance,
        "nfe_per_image_conditional": nfe_cond, "nfe_per_image_unconditional": nfe_uncond,
        "sampling_seconds": round(seconds, 1),
        "conditional_accuracy": float((logits.argmax(1) == labels).float().mean()),
        "fd_cls_uncond_vs_test": frechet_distance(f_uncond, f_test),
        "fd_cls_test_half_vs_half": frechet_distance(f_test[perm[:half]], f_test[perm[half:]]),
        f"fd_cls_real{n}_vs_rest_of_test": frechet_distance(real_a, real_b),
        "kid_cls_uncond_vs_test": kernel_distance(f_uncond, f_test)[0],
        f"kid_cls_real{n}_vs_rest_of_test": kernel_distance(real_a, real_b)[0],
        "nn_l2_to_train_samples_median": float(nn_samples.median()),
        "nn_l2_to_train_samples_min": float(nn_samples.min()),
        "nn_l2_to_train_test_images_median": float(nn_test.median()),
        "nn_l2_to_train_test_images_min": float(nn_test.min()),
    }


@torch.no_grad()
def evaluate_patch_prior(prior, dataset: str, n: int = 64, steps: int = 18, seed: int = 0,
                         sigmas: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0),
                         grid_path: str | Path | None = None) -> dict[str, Any]:
    """A prior of a dataset without a shipped classifier (natural-photo patches, a photo folder).

    No FD-cls here (no feature network for these images). Measured instead: the denoiser's PSNR on
    the test split's patches at noise levels ``sigmas`` (EDM σ in the prior's [-1, 1] data space;
    the same seeded noise for every model), beside the PSNR of the noisy input, so a better prior
    denoises better; and the nearest-neighbour L2 distance (pixels in [0, 1]) of ``n`` unconditional
    samples to the training patches, beside that of ``n`` test patches (copying shows as samples far
    closer than real test patches).
    """
    from diffcomm.data import get_dataset, save_grid
    from diffcomm.data.datasets import parse_dataset_spec
    from diffcomm.diffusion.sampling import sample_prior
    from diffcomm.metrics import psnr

    base, options = parse_dataset_spec(dataset)
    test = get_dataset(base, "test").images
    train = get_dataset(dataset, "train").images
    g = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {"dataset": base, "test_patches": len(test), "denoise_sigmas": list(sigmas)}
    x = prior.to_model(test)
    for sigma in sigmas:
        noise = torch.randn(x.shape, generator=g)
        noisy = x + sigma * noise
        den = torch.cat([prior(noisy[i:i + 256], torch.full((len(noisy[i:i + 256]),), sigma))
                         for i in range(0, len(x), 256)])
        out[f"denoise_psnr_sigma{sigma:g}"] = float(psnr(prior.to_pixels(den).clamp(0, 1), test).mean())
        out[f"noisy_psnr_sigma{sigma:g}"] = float(psnr(prior.to_pixels(noisy).clamp(0, 1), test).mean())
    t0 = time.time()
    samples, nfe = sample_prior(prior, n, steps=steps, seed=seed + 1, shape=tuple(test.shape[1:]))
    out.update({"samples": n, "sampler": "heun", "steps": steps, "nfe_per_image_unconditional": nfe,
                "sampling_seconds": round(time.time() - t0, 1)})
    perm = torch.randperm(len(test), generator=g)[:n]
    out["nn_l2_to_train_samples_median"] = float(nearest_neighbour_distances(samples, train).median())
    out["nn_l2_to_train_test_patches_median"] = float(nearest_neighbour_distances(test[perm], train).median())
    if grid_path:
        save_grid(grid_path, samples[:64], nrow=8)
    return out


def sample_grid(prior, path: str | Path, guidance: float = 1.0, steps: int = 18, seed: int = 0) -> None:
    """Ten class-conditional samples of each of the ten classes, one row per class (Heun, CFG ``guidance``)."""
    from diffcomm.data import save_grid
    from diffcomm.diffusion.sampling import sample_prior

    labels = torch.arange(100) // 10
    samples, _ = sample_prior(prior, 100, labels=labels, guidance=guidance, steps=steps, seed=seed)
    save_grid(path, samples, nrow=10)


def evaluate_classifier(classifier, dataset: str = "fashion-mnist") -> dict[str, Any]:
    """Accuracy on the test split of the dataset the classifier was trained on."""
    from diffcomm.data import get_dataset
    from diffcomm.metrics.classifier import accuracy

    test = get_dataset(dataset, "test")
    return {"test_accuracy": accuracy(classifier, test.images, test.labels), "test_images": len(test.images),
            "dataset": dataset}


@torch.no_grad()
def evaluate_jscc(model, n: int = 2000, seed: int = 0, dataset: str = "fashion-mnist",
                  link: dict[str, Any] | None = None) -> dict[str, Any]:
    """Test-split PSNR/SSIM at 0, 5, 10 and 20 dB on the first ``n`` test images of ``dataset``, over the
    model's training link (its channel and the recipe's ``[link]`` options and stages).

    Spec options (``natural-patches?per_photo=2048``) are dropped: the test split is the dataset's
    standard one (natural-patches: 256 patches of each test photo).
    """
    from diffcomm.data import get_dataset
    from diffcomm.data.datasets import parse_dataset_spec
    from diffcomm.metrics import psnr, ssim
    from diffcomm.transmit.deepjscc import simulate, training_link

    base = parse_dataset_spec(dataset)[0]
    x = get_dataset(base, "test").images[:n]
    n = len(x)
    out: dict[str, Any] = {"test_images": n, "dataset": base, "channel": model.config.channel}
    channel, stages = training_link(model.config.channel, link)
    for snr in (0.0, 5.0, 10.0, 20.0):
        gen = torch.Generator().manual_seed(seed)
        x_hat = torch.cat([simulate(model, x[i:i + 500], torch.full((len(x[i:i + 500]),), snr),
                                    channel, gen, stages) for i in range(0, n, 500)])
        out[f"psnr_{snr:g}dB"] = float(psnr(x_hat, x).mean())
        out[f"ssim_{snr:g}dB"] = float(ssim(x_hat, x).mean())
    return out


def training_snapshots(log_path: Path) -> list[dict[str, Any]]:
    """The periodic evaluations logged during training (one row per step, the last kept on resume).

    These are the rows of ``log.jsonl`` that carry more than step/loss/lr/seconds, e.g. DeepJSCC's
    PSNR at 0/10/20 dB every ``snapshot_every`` steps: quality next to the number of steps.
    """
    plain = {"step", "loss", "lr", "seconds"}
    rows: dict[int, dict[str, Any]] = {}
    if log_path.is_file():
        for line in log_path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill; the harness repairs it on resume
            if isinstance(row, dict) and "step" in row and set(row) - plain:
                rows[int(row["step"])] = {k: v for k, v in row.items() if k not in ("lr", "seconds")}
    return [rows[k] for k in sorted(rows)]


def final_quality_snapshot(run: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The run's logged sample-quality snapshot (1,000 samples) at the step being shipped, or None.

    A prior run with ``[snapshot] quality_samples = 1000`` measures its EMA weights with
    :func:`evaluate_prior`'s defaults every ``snapshot_every`` steps; when one is at the shipped step
    (``training.steps``), shipping reuses it instead of sampling the same 2,000 images again.
    """
    steps = config.get("training", {}).get("steps")
    rows = [r for r in training_snapshots(run / "log.jsonl") if r.get("step") == steps]
    if not rows or "fd_cls_uncond_vs_test" not in rows[0] or "fd_cls_real1000_vs_rest_of_test" not in rows[0]:
        return None
    return dict(rows[0])


def run_model_config(run: Path) -> dict[str, Any]:
    """The ``model.json`` of a finished training run (one-line error when missing or malformed)."""
    from diffcomm.checks import read_json_file

    path = run / "model.json"
    if not run.is_dir():
        raise DiffcommError(f"training run folder {run} not found")
    if not path.is_file():
        raise DiffcommError(f"{path} not found; finish the training run first (rerun its train command)")
    config = read_json_file(path, "model config")
    for key, tp in (("kind", str), ("model", dict)):
        if not isinstance(config.get(key), tp):
            raise DiffcommError(f"model config {path} has no valid {key!r}; it was not written by diffcomm train")
    return config


DECODER_KINDS = ("conditional", "bridge")   # trained decoders conditioned on the channel output


def ship(run_dir: str | Path, name: str, recipe: str | Path, weights_dir: str | Path | None = None,
         docs_dir: str | Path = "docs/images", ema_step: int | None = None, **options: Any) -> dict[str, Any]:
    """Evaluate a finished training run and copy it into the zoo with its record.

    ``ema_step``: ship the EMA weights the run kept at that step (``[snapshot] keep_ema_at``,
    ``ema_NNNNNNN.safetensors``) instead of its final weights, e.g. the best point of a quality curve
    that rose again later; the record then says so (``training.steps`` is that step,
    ``training.kept_ema_of_steps`` the run's length) and the metrics are those logged at that step.
    """
    from diffcomm import zoo
    from diffcomm.checks import check_output_path

    run = Path(run_dir)
    weights = run / "model.safetensors"
    config = run_model_config(run)
    if not weights.is_file():
        raise DiffcommError(f"{weights} not found; finish the training run first (rerun its train command)")
    if ema_step is not None:
        weights = run / f"ema_{int(ema_step):07d}.safetensors"
        if not weights.is_file():
            raise DiffcommError(f"{weights} not found; the run keeps EMA weights only at its recipe's "
                                f"[snapshot] keep_ema_at steps")
        training = dict(config.get("training", {}))
        config["training"] = {"steps": int(ema_step), "kept_ema_of_steps": training.get("steps"),
                              "git_revision": training.get("git_revision"),
                              "at_final_step": {k: v for k, v in training.items() if k != "git_revision"}}
    kind = config["kind"]
    if kind not in (*PRIOR_KINDS, *LATENT_KINDS, *DECODER_KINDS, "classifier", "jscc"):
        raise DiffcommError(f"don't know how to evaluate kind {kind!r}")
    if not name or "/" in name or name.startswith("."):
        raise DiffcommError(f"--name must be a plain model name like fmnist-prior, got {name!r}")
    out = Path(weights_dir) if weights_dir else zoo.WEIGHTS_DIR
    check_output_path(out, "dir", what="zoo folder")
    if kind in (*PRIOR_KINDS, *LATENT_KINDS, *DECODER_KINDS):
        check_output_path(docs_dir, "dir", what="docs folder")
    model = zoo.load_weights(weights, config)
    if ema_step is not None:
        config["snapshots"] = [r for r in training_snapshots(run / "log.jsonl") if r["step"] <= int(ema_step)]
    if kind in PRIOR_KINDS:
        grid = Path(docs_dir) / f"{name}-samples.png"
        dataset = str(config.get("data", {}).get("dataset", "fashion-mnist"))
        final = final_quality_snapshot(run, config)
        if dataset == "fashion-mnist" and final is not None and not options:
            # the run already measured its final weights with evaluate_prior's defaults (same seeds)
            metrics = {**final, "metrics_source": f"training snapshot at step {final['step']} (evaluate_prior, "
                                                  f"n=1000, seed 0, CFG 1)"}
            metrics.pop("step")
            metrics.pop("loss", None)
            if (run / f"samples_{final['step']:07d}.png").is_file():
                shutil.copyfile(run / f"samples_{final['step']:07d}.png", grid)
            else:  # the snapshot's grid was not kept: ten class-conditional samples of each class
                metrics["sample_grid_note"] = "grid redrawn at shipping (100 samples, seed 0, CFG 1)"
                sample_grid(model, grid)
        elif dataset == "fashion-mnist":  # with the sampler the run recorded as the prior's own (e.g. consistency)
            options = {**dict(config.get("sampling", {})), **options}
            metrics = evaluate_prior(model, zoo.load("fmnist-classifier"), grid_path=grid, **options)
        else:
            metrics = evaluate_patch_prior(model, dataset, grid_path=grid)
        metrics["sample_grid"] = str(grid)
    elif kind in LATENT_KINDS:  # latent diffusion: measured beside its code
        from diffcomm.diffusion.autoencoder import latent_metrics

        metrics = latent_metrics(model, config, name, docs_dir)
    elif kind in DECODER_KINDS:   # conditional / bridge decoders: the run's last logged reconstruction PSNRs
        snaps = [r for r in training_snapshots(run / "log.jsonl") if any(k.startswith("psnr") for k in r)]
        if not snaps:
            raise DiffcommError(f"{run}/log.jsonl has no snapshot to ship; run at least snapshot_every steps")
        metrics = {k: v for k, v in snaps[-1].items() if k not in ("loss", "lr", "seconds")}
        metrics["metrics_source"] = (f"training snapshot at step {metrics.pop('step')}: mean PSNR (dB) on 64 "
                                     "Fashion-MNIST test images at 5 dB, beside the DeepJSCC decoder's")
        if (run / f"samples_{snaps[-1]['step']:07d}.png").is_file():
            grid = Path(docs_dir) / f"{name}-samples.png"
            shutil.copyfile(run / f"samples_{snaps[-1]['step']:07d}.png", grid)
            metrics["sample_grid"] = str(grid)
    elif kind == "classifier":
        metrics = evaluate_classifier(model, str(config.get("data", {}).get("dataset", "fashion-mnist")))
    elif kind == "jscc":
        metrics = evaluate_jscc(model, dataset=str(config.get("data", {}).get("dataset", "fashion-mnist")),
                                link=config.get("link"))
    else:
        raise DiffcommError(f"don't know how to evaluate kind {kind!r}")
    config["metrics"] = metrics
    config.setdefault("snapshots", training_snapshots(run / "log.jsonl"))
    config["recipe"] = str(recipe)
    config["command"] = f"diffcomm train {kind} --config {shlex.quote(str(recipe))} --out {shlex.quote(str(run))}"
    out.mkdir(parents=True, exist_ok=True)
    from diffcomm.training import save_model

    save_model(out / f"{name}.safetensors", model, config)
    zoo._CACHE.pop(name, None)
    return config
