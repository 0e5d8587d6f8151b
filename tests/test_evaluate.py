"""Linear probe against scikit-learn, kNN against a hand computation, the evaluation record."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from robench.backbone import create_backbone
from robench.data import DatasetSplits, Split
from robench.evaluate import EvalConfig, evaluate_encoder, knn_predict, linear_probe
from robench_plugins.distortions.noise import GaussianNoise


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(3, 8, generator=gen) * 1.5
    labels = torch.arange(n) % 3
    return centres[labels] + torch.randn(n, 8, generator=gen), labels


def test_linear_probe_matches_scikit_learn() -> None:
    x, y = blobs(120, 0)
    test_x, _ = blobs(300, 1)
    ours = linear_probe(x, y, test_x, num_classes=3, c=1.0).numpy()
    scaler = StandardScaler().fit(x.numpy())
    reference = LogisticRegression(C=1.0, max_iter=5000, tol=1e-10).fit(scaler.transform(x.numpy()), y.numpy())
    theirs = reference.predict(scaler.transform(test_x.numpy()))
    assert (ours == theirs).mean() >= 0.99


def test_linear_probe_is_deterministic() -> None:
    x, y = blobs(60, 2)
    assert torch.equal(linear_probe(x, y, x, 3), linear_probe(x, y, x, 3))


def test_knn_weighted_vote_by_hand() -> None:
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    test = torch.tensor([[0.6, 0.8]])
    # cosine similarities to the test point; the 3 nearest vote with exp(sim / 0.5)
    unit = train / train.norm(dim=1, keepdim=True)
    sims = (unit @ (test[0] / test[0].norm())).tolist()
    votes = {0: 0.0, 1: 0.0, 2: 0.0}
    for i in sorted(range(5), key=lambda i: -sims[i])[:3]:
        votes[int(labels[i])] += np.exp(sims[i] / 0.5)
    expected = max(votes, key=votes.get)
    assert int(knn_predict(train, labels, test, 3, k=3, temperature=0.5)[0]) == expected == 1


def test_knn_with_one_neighbour_is_the_cosine_nearest_neighbour() -> None:
    x, y = blobs(80, 3)
    test_x, _ = blobs(50, 4)
    nearest = NearestNeighbors(n_neighbors=1, metric="cosine").fit(x.numpy()).kneighbors(test_x.numpy())[1][:, 0]
    assert torch.equal(knn_predict(x, y, test_x, 3, k=1), y[nearest])


def test_evaluation_record(tiny_spec) -> None:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(40, 3, 32, 32, generator=gen) * 255).to(torch.uint8)
    labels = torch.arange(40) % 4
    data = DatasetSplits("toy", 4, True, Split(images[:30], labels[:30]), Split(images[30:], labels[30:]))
    encoder = create_backbone(tiny_spec, 4)
    result = evaluate_encoder(encoder, data, torch.arange(0, 30, 2), GaussianNoise(), (1, 3), 0,
                              EvalConfig(batch_size=7), torch.device("cpu"))
    assert set(result.accuracy) == {"linear", "knn"}
    for metric in ("linear", "knn"):
        assert list(result.accuracy[metric]) == ["clean", "1", "3"]
        for condition, accuracy in result.accuracy[metric].items():
            predictions = torch.tensor(result.predictions[metric][condition])
            assert predictions.shape == (10,)
            assert accuracy == float((predictions == labels[30:]).float().mean())
    again = evaluate_encoder(encoder, data, torch.arange(0, 30, 2), GaussianNoise(), (1, 3), 0,
                             EvalConfig(batch_size=4), torch.device("cpu"))
    assert again.predictions == result.predictions  # batch size does not change the pixels


def test_cpu_embedding_forwards_in_slices_with_the_same_features(tiny_spec, monkeypatch) -> None:
    import robench.evaluate as evaluate
    from robench.data import to_float

    gen = torch.Generator().manual_seed(1)
    split = Split((torch.rand(11, 3, 32, 32, generator=gen) * 255).to(torch.uint8), torch.zeros(11, dtype=torch.long))
    encoder = create_backbone(tiny_spec, 4).eval()
    monkeypatch.setattr(evaluate, "CPU_FORWARD_IMAGES", 4)
    sizes = []
    hook = encoder.patch_embed.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[0]))
    features = evaluate.embed(encoder, split, distortion=None, severity=None, seed=0, dataset="toy",
                              split_name="test", indices=torch.arange(11), batch_size=9, device=torch.device("cpu"))
    hook.remove()
    assert sizes == [4, 4, 1, 2]  # distortion chunks of 9, forwards of at most 4
    with torch.no_grad():
        whole = encoder.forward_features(to_float(split.images))[:, 0]
    torch.testing.assert_close(features, whole, rtol=1e-5, atol=1e-5)
