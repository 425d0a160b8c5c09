"""The synthetic line data set (Kügler et al.) and its CNN."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from unified_adv.files import cache_dir
from unified_adv.sources.builtin.line_cnn import LineCNN, builtin_line_cnn, train_line_cnn
from unified_adv.sources.lines import (
    PAPER_TABLE1,
    angle_grid,
    boundary_distance,
    circular_mean_180,
    count_table,
    generate_lines,
    label_of,
    rasterise,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small forward passes: on a shared 2-core machine two torch threads were up to 10x
    slower than one whenever another process held a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Our rasteriser's unique-image counts (see unified_adv/lines.py for why they differ
# from the paper's Table 1), and how far from the paper they may be.
OUR_COUNTS = {(16, 2.0): 162, (16, 1.0): 238, (16, 0.5): 278, (32, 2.0): 854}
PAPER_FACTOR = 1.45


@pytest.mark.parametrize(("size", "step"), sorted(OUR_COUNTS))
def test_unique_image_counts_are_stable_and_near_the_paper(size: int, step: float) -> None:
    lines = generate_lines(size, step)
    assert len(lines) == OUR_COUNTS[(size, step)]
    ratio = len(lines) / PAPER_TABLE1[(size, step)]
    assert 1 / PAPER_FACTOR <= ratio <= PAPER_FACTOR


def test_count_table_rows() -> None:
    rows = count_table((16,), (1.0, 2.0))
    assert rows == [
        (16, 1.0, 238, 280, pytest.approx(238 / 280)),
        (16, 2.0, 162, 170, pytest.approx(162 / 170)),
    ]


@pytest.mark.parametrize("step", [1.0, 0.5])
def test_images_are_unique_binary_and_labelled_by_the_rule(step: float) -> None:
    lines = generate_lines(16, step)
    n = len(lines)
    assert lines.images.shape == (n, 1, 16, 16) and lines.images.dtype == np.float32
    assert set(np.unique(lines.images)) <= {0.0, 1.0}
    flat = lines.images.reshape(n, -1)
    assert len(np.unique(flat, axis=0)) == n
    # Every (L, alpha) of the grid draws exactly one image, and draws that image.
    alphas = angle_grid(step)
    pairs = [p for ps in lines.params for p in ps]
    assert len(pairs) == len(set(pairs)) == len(range(12, 15)) * len(alphas)
    for img, params in zip(lines.images, lines.params, strict=True):
        for length, alpha in params:
            assert np.array_equal(rasterise(16, length, np.array([alpha]))[0], img[0] == 1)
    # Labels: unanimous producing angles give their label; mixed ones are ambiguous and
    # take the majority over distinct angles (a tie goes to the representative angle).
    for k in range(n):
        distinct = np.unique([a for _, a in lines.params[k]])
        votes = label_of(distinct)
        if lines.ambiguous[k]:
            assert 0 < votes.sum() < len(votes)
            if 2 * votes.sum() != len(votes):
                assert lines.labels[k] == int(2 * votes.sum() > len(votes))
            else:
                assert lines.labels[k] == label_of(lines.angle[k])
        else:
            assert (votes == lines.labels[k]).all()
    assert lines.n_ambiguous == int(lines.ambiguous.sum())
    # Sorted by representative angle; distances to 0/180 and 40 degrees.
    assert (np.diff(lines.angle) >= 0).all() and (lines.angle < 180).all()
    expected = np.minimum.reduce([lines.angle, 180 - lines.angle, np.abs(lines.angle - 40)])
    np.testing.assert_allclose(lines.boundary_distance, expected)


def test_ambiguous_images_exist_at_fine_steps_and_are_counted() -> None:
    lines = generate_lines(16, 0.5)
    assert lines.n_ambiguous == 2
    for k in np.flatnonzero(lines.ambiguous):
        assert lines.boundary_distance[k] < 1.0  # they straddle a decision boundary


def test_label_rule_angle_helpers() -> None:
    assert label_of(np.array([0.0, 40.0, 40.5, 90.0, 179.5])).tolist() == [1, 1, 0, 0, 0]
    assert circular_mean_180(np.array([179.0, 1.0])) == pytest.approx(0.0)
    assert circular_mean_180(np.array([178.0, 179.0])) == pytest.approx(178.5)
    np.testing.assert_allclose(
        boundary_distance(np.array([0.0, 20.0, 41.0, 170.0])), [0, 20, 1, 10]
    )


def test_generation_is_deterministic() -> None:
    a, b = generate_lines(16, 2.0), generate_lines(16, 2.0)
    assert np.array_equal(a.images, b.images) and a.params == b.params


@pytest.mark.parametrize(
    ("size", "features"), [(16, 32 * 2 * 2), (32, 32 * 6 * 6), (64, 32 * 14 * 14)]
)
def test_line_cnn_is_the_papers_architecture(size: int, features: int) -> None:
    net = LineCNN(size)
    kinds = [type(m) for m in net]
    assert kinds == [
        nn.Conv2d,
        nn.ReLU,
        nn.MaxPool2d,
        nn.Conv2d,
        nn.ReLU,
        nn.MaxPool2d,
        nn.Dropout,
        nn.Flatten,
        nn.Linear,
        nn.ReLU,
        nn.Linear,
    ]
    assert net[8].in_features == features and net[8].out_features == 128
    assert net(torch.zeros(3, 1, size, size)).shape == (3, 2)


def test_shipped_line_cnn_fits_every_image() -> None:
    """kugler.yaml's model (D = 16, 2°, seed 0) ships as weights in the package."""
    lines = generate_lines(16, 2.0)
    net, details = builtin_line_cnn(16, 2.0, seed=0)
    assert details["training_accuracy"] == 1.0 and 1 <= details["epochs"] <= 200
    assert Path(details["weights"]).name == "line-cnn-d16-step2-seed0.safetensors"
    with torch.no_grad():
        pred = net(torch.from_numpy(lines.images)).argmax(1).numpy()
    assert (pred == lines.labels).all()


def test_trained_line_cnn_fits_every_image_and_is_cached_and_deterministic() -> None:
    """Nets the package does not ship (the study's other seeds) are trained once, cached."""
    lines = generate_lines(16, 2.0)
    net, details = builtin_line_cnn(16, 2.0, seed=1)
    assert details["training_accuracy"] == 1.0
    assert 1 <= details["epochs"] <= 200
    with torch.no_grad():
        pred = net(torch.from_numpy(lines.images)).argmax(1).numpy()
    assert (pred == lines.labels).all()
    path = cache_dir() / "line-cnn-v1-d16-step2-seed1.pt"
    assert details["cache"] == str(path) and path.exists()
    # The cache is used (no retraining), and retraining with the seed gives the same net.
    again, details_again = builtin_line_cnn(16, 2.0, seed=1)
    assert details_again["seconds"] == details["seconds"]
    torch.set_num_threads(2)
    fresh, _ = train_line_cnn(lines, seed=1)
    assert torch.get_num_threads() == 2  # trained on one thread, the setting restored
    torch.set_num_threads(1)
    for (k, v), (k2, v2) in zip(net.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
