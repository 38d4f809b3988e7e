"""NumPy references written from docs/method.md (sections 1-4), independent of the implementation."""

import numpy as np

ADAPTIVE = (1.0 + np.sqrt(3.0)) / 2.0


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def standardize(logits):
    """(l - mean) / (std + 1e-7), std with Bessel's correction, as torch.std."""
    mean = logits.mean(axis=-1, keepdims=True)
    std = logits.std(axis=-1, ddof=1, keepdims=True)
    return (logits - mean) / (std + 1e-7)


def kd(teacher, student, temperature):
    """Per-sample T^2 * KL(softmax(t/T) || softmax(s/T)); temperature scalar or (B, 1)."""
    temperature = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (len(teacher), 1))
    p = softmax(teacher / temperature)
    q = softmax(student / temperature)
    kl = np.sum(p * (np.log(p) - np.log(q)), axis=-1)
    return temperature[:, 0] ** 2 * kl


def adaptive_temperature(teacher, student, source="both"):
    peak = np.abs(teacher).max(axis=-1)
    if source == "both":
        peak = np.maximum(peak, np.abs(student).max(axis=-1))
    return (ADAPTIVE * peak)[:, None]


def pearson(a, b):
    return np.array([np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)])


def dkd(teacher, student, labels, temperature):
    """TCKD and NCKD per sample (docs/method.md section 4.4), with the T^2 factor; temperature scalar or (B, 1)."""
    temperature = np.broadcast_to(np.asarray(temperature, dtype=np.float64), (len(teacher), 1))
    gt = np.zeros_like(teacher, dtype=bool)
    gt[np.arange(len(labels)), labels] = True
    pt, ps = softmax(teacher / temperature), softmax(student / temperature)
    bt = np.stack([pt[gt], 1 - pt[gt]], axis=-1)
    bs = np.stack([ps[gt], 1 - ps[gt]], axis=-1)
    tckd = np.sum(bt * (np.log(bt) - np.log(bs)), axis=-1)
    nt = softmax(np.where(gt, -1000.0, teacher / temperature))[~gt].reshape(len(teacher), -1)
    ns = softmax(np.where(gt, -1000.0, student / temperature))[~gt].reshape(len(teacher), -1)
    nckd = np.sum(nt * (np.log(nt) - np.log(ns)), axis=-1)
    factor = temperature[:, 0] ** 2
    return tckd * factor, nckd * factor
