"""benchmarks/target_softness.py's arithmetic against the formulas (softmax of logits / T, entropy)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import target_softness  # noqa: E402


def test_softness_of_known_distributions():
    # Uniform over 4 classes: largest p 1/4, entropy log 4, 4 effective classes.
    np.testing.assert_allclose(target_softness.softness(target_softness.softened(np.zeros((1, 4)), 3.0)),
                               [0.25, np.log(4.0), 4.0])
    # logits (log 3, 0) at T = 1 give (3/4, 1/4); at T = 2 (sqrt 3, 1) / (sqrt 3 + 1): one temperature per row.
    p = target_softness.softened(np.log([[3.0, 1.0], [3.0, 1.0]]), np.array([[1.0], [2.0]]))
    np.testing.assert_allclose(p, [[0.75, 0.25], [np.sqrt(3) / (np.sqrt(3) + 1), 1 / (np.sqrt(3) + 1)]])
    entropy = -np.sum(p * np.log(p), axis=1)
    np.testing.assert_allclose(target_softness.softness(p), [p.max(axis=1).mean(), entropy.mean(),
                                                             np.exp(entropy).mean()])
