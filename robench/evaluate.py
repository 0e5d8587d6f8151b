"""The harness's evaluation: frozen encoder, CLS features, linear probe and kNN.

For every condition (clean, and each severity of the cell's distortion), the encoder embeds the
labelled train images and the test images under that condition; a linear probe and a kNN
classifier are fitted on the labelled features and predict the test features. The distorted
pixels come from per-sample seeds of (seed, dataset, split, index, distortion, severity), so
every method of a cell is scored on identical inputs and per-sample predictions can be paired.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import threadpoolctl
import torch
import torch.nn.functional as F
from torch import nn

from robench.api import Distortion
from robench.backbone import cls_embedding
from robench.data import DatasetSplits, Split, distortion_seeds, iterate_chunks, to_device, to_float
from robench.rng import BatchRNG
from robench.training import autocast

logger = logging.getLogger(__name__)

METRICS = ("linear", "knn")
CLEAN = "clean"
CPU_FORWARD_IMAGES = 128
"""Images per encoder forward on the CPU: smaller slices keep a small ViT's activations in cache
(1.3-1.5x the throughput of 512 for the default backbone); results do not depend on it beyond
float rounding."""


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation settings, the same for every method.

    Attributes:
        knn_k: neighbours of the kNN classifier.
        knn_temperature: temperature of the exp(similarity / T) vote weights (DINO's kNN).
        probe_c: inverse L2 strength of the linear probe, as scikit-learn's ``C``.
        probe_max_iter: L-BFGS iterations of the linear probe.
        batch_size: images per distortion call and per forward pass when embedding (on the CPU
            the forward takes them :data:`CPU_FORWARD_IMAGES` at a time).
    """

    knn_k: int = 20
    knn_temperature: float = 0.07
    probe_c: float = 1.0
    probe_max_iter: int = 200
    batch_size: int = 512


@dataclass(frozen=True)
class EvalResult:
    """Accuracies and per-sample test predictions, keyed by metric then condition.

    Conditions are ``"clean"`` and the severities as strings (``"1"`` .. ``"5"``).
    """

    accuracy: dict[str, dict[str, float]]
    predictions: dict[str, dict[str, list[int]]]


@torch.no_grad()
def embed(
    encoder: nn.Module,
    split: Split,
    *,
    distortion: Distortion | None,
    severity: int | None,
    seed: int,
    dataset: str,
    split_name: str,
    indices: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """CLS features ``(N, D)`` of ``split`` (already subset to ``indices``), distorted at
    ``severity`` (None: clean) with per-sample seeds from the original ``indices``."""
    features = []
    for chunk in iterate_chunks(len(split), batch_size):
        images = to_float(split.images[chunk].to(device))
        if severity is not None:
            assert distortion is not None
            seeds = distortion_seeds(seed, dataset, split_name, distortion.name, severity, indices[chunk])
            images = distortion(images, severity, BatchRNG(to_device(seeds, device)))
        rows = CPU_FORWARD_IMAGES if images.device.type == "cpu" else len(images)
        for part in iterate_chunks(len(images), rows):
            with autocast(device):
                features.append(cls_embedding(encoder, images[part]).float())
    return torch.cat(features)


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    num_classes: int,
    c: float = 1.0,
    max_iter: int = 200,
) -> torch.Tensor:
    """Multinomial logistic regression on standardised features; predicted test classes.

    Minimises mean cross-entropy + ||W||^2 / (2 c N), the objective of scikit-learn's
    ``LogisticRegression(C=c)``, with its solver: SciPy's L-BFGS-B (``max_iter`` iterations at
    most) driving a loss and gradient computed by hand on the features' device. Deterministic.
    """
    dtype = torch.float64 if train_x.device.type == "cpu" else torch.float32
    mean = train_x.mean(0, keepdim=True)
    std = train_x.std(0, unbiased=False, keepdim=True).clamp_min(1e-6)
    x = ((train_x - mean) / std).to(dtype)
    x_t = x.T.contiguous()  # for the gradient's product: MKL's float64 product with x.T ran 7x slower
    n, d = x.shape
    target = F.one_hot(train_y.to(x.device), num_classes).to(dtype)
    penalty = 1.0 / (2.0 * c * n)

    def unpack(theta: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """SciPy's flat parameters as the weight ``(D, K)`` and bias ``(K,)`` on the device."""
        theta = torch.from_numpy(theta).to(device=x.device, dtype=dtype)
        return theta[: d * num_classes].view(d, num_classes), theta[d * num_classes :]

    def loss_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
        weight, bias = unpack(theta)
        log_p = torch.addmm(bias, x, weight).log_softmax(1)
        loss = penalty * weight.pow(2).sum() - (log_p * target).sum() / n
        residual = log_p.exp_().sub_(target).div_(n)  # d loss / d logits
        gradient = torch.cat([torch.addmm(weight, x_t, residual, beta=2.0 * penalty).view(-1), residual.sum(0)])
        return float(loss), gradient.cpu().double().numpy()

    # SciPy's vector operations are tiny: OpenBLAS threads would only spin against torch's
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        solution = scipy.optimize.minimize(
            loss_and_gradient, np.zeros(d * num_classes + num_classes), jac=True, method="L-BFGS-B",
            options={"maxiter": max_iter, "maxcor": 20, "gtol": 1e-9, "ftol": 64 * np.finfo(float).eps},
        )
    weight, bias = unpack(solution.x)
    test = ((test_x - mean) / std).to(dtype)
    return torch.addmm(bias, test, weight).argmax(1)


@torch.no_grad()
def knn_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk: int = 1024,
) -> torch.Tensor:
    """Weighted kNN on cosine similarity (Wu et al., 2018; DINO): each of the ``k`` nearest
    labelled features votes for its class with weight exp(similarity / temperature)."""
    k = min(k, train_x.shape[0])
    train = F.normalize(train_x, dim=1)
    labels = train_y.to(train_x.device)
    out = []
    for part in iterate_chunks(test_x.shape[0], chunk):
        sim = F.normalize(test_x[part], dim=1) @ train.T
        top_sim, top_idx = sim.topk(k, dim=1)
        votes = torch.zeros(top_sim.shape[0], num_classes, device=sim.device, dtype=sim.dtype)
        votes.scatter_add_(1, labels[top_idx], torch.exp(top_sim / temperature))
        out.append(votes.argmax(1))
    return torch.cat(out)


def evaluate_encoder(
    encoder: nn.Module,
    data: DatasetSplits,
    labelled: torch.Tensor,
    distortion: Distortion,
    severities: tuple[int, ...],
    seed: int,
    config: EvalConfig,
    device: torch.device,
) -> EvalResult:
    """Score a frozen encoder on clean and distorted test images at each severity.

    Args:
        encoder: the adapted encoder (put in eval mode here).
        data: the dataset (splits on any device).
        labelled: indices of the labelled train subset (the label budget); the probes see only them.
        distortion: the cell's distortion.
        severities: severities to evaluate.
        seed: the cell's seed (enters the per-sample distortion seeds).
        config: evaluation settings.
        device: where to compute.
    """
    encoder = encoder.eval()
    probe_split = data.train.subset(labelled)
    test_idx = torch.arange(len(data.test))
    accuracy: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    predictions: dict[str, dict[str, list[int]]] = {m: {} for m in METRICS}
    test_y = data.test.labels.to(device)
    for severity in (None, *severities):
        condition = CLEAN if severity is None else str(severity)
        common = dict(distortion=distortion, severity=severity, seed=seed, dataset=data.name,
                      batch_size=config.batch_size, device=device)
        train_x = embed(encoder, probe_split, split_name="train", indices=labelled.cpu(), **common)
        test_x = embed(encoder, data.test, split_name="test", indices=test_idx, **common)
        train_y = probe_split.labels.to(device)
        preds = {
            "linear": linear_probe(train_x, train_y, test_x, data.num_classes,
                                   config.probe_c, config.probe_max_iter),
            "knn": knn_predict(train_x, train_y, test_x, data.num_classes,
                               config.knn_k, config.knn_temperature),
        }
        for metric, pred in preds.items():
            accuracy[metric][condition] = float((pred.to(device) == test_y).float().mean())
            predictions[metric][condition] = pred.cpu().tolist()
        logger.debug("%s %s: %s", distortion.name, condition,
                     {m: round(a[condition], 4) for m, a in accuracy.items()})
    return EvalResult(accuracy, predictions)
