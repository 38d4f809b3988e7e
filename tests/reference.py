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


# ---------------------------------------------------------------------------- feature terms (tfadakd.methods)
def fitnet(teacher_feature, student_feature):
    """FitNet with identical shapes (no connector): per-sample mean over (h, w, c) of the squared difference."""
    return ((student_feature - teacher_feature) ** 2).reshape(len(teacher_feature), -1).mean(axis=-1)


def average_pool(feature, factor):
    """(b, h, w, c) -> (b, h / factor, w / factor, c), the mean of each factor x factor window."""
    b, h, w, c = feature.shape
    return feature.reshape(b, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def attention(feature):
    """Zagoruyko & Komodakis: the channel mean of f^2, flattened, divided by its L2 norm."""
    q = (feature ** 2).mean(axis=-1).reshape(len(feature), -1)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def at(teacher_features, student_features):
    """Sum over the stages of the per-sample mean squared difference of the attention maps; the larger map
    of a pair is average-pooled to the smaller one first."""
    total = 0.0
    for t, s in zip(teacher_features, student_features):
        if s.shape[1] > t.shape[1]:
            s = average_pool(s, s.shape[1] // t.shape[1])
        elif t.shape[1] > s.shape[1]:
            t = average_pool(t, t.shape[1] // s.shape[1])
        total = total + ((attention(s) - attention(t)) ** 2).mean(axis=-1)
    return total


def huber(x):
    return np.where(np.abs(x) < 1, 0.5 * x ** 2, np.abs(x) - 0.5)


def rkd(teacher, student, distance_weight=25.0, angle_weight=50.0):
    """Park et al.: per sample i, the mean over j of huber(distance relation) and over (j, k) of huber(angle
    relation), each model's distances divided by their mean over the pairs of distinct samples."""
    def distances(x):
        d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
        return d / d[~np.eye(len(x), dtype=bool)].mean()

    def angles(x):
        out = np.zeros((len(x),) * 3)
        for i in range(len(x)):
            e = x - x[i]
            norm = np.linalg.norm(e, axis=-1, keepdims=True)
            e = np.where(norm > 0, e / np.where(norm > 0, norm, 1), 0)
            out[i] = e @ e.T
        return out

    distance = huber(distances(student) - distances(teacher)).mean(axis=-1)
    angle = huber(angles(student) - angles(teacher)).mean(axis=(1, 2))
    return distance_weight * distance + angle_weight * angle


def numeric_gradient(loss, teacher, student, h=1e-6):
    """Central finite differences of `sum(loss(teacher, student))` with respect to `student` (float64)."""
    teacher, student = teacher.astype("float64"), student.astype("float64")
    gradient = np.zeros_like(student)
    for index in np.ndindex(*student.shape):
        up, down = student.copy(), student.copy()
        up[index] += h
        down[index] -= h
        gradient[index] = (np.sum(loss(teacher, up)) - np.sum(loss(teacher, down))) / (2 * h)
    return gradient
