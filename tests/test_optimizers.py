"""tfadakd.optimizers.SGD against torch.optim.SGD's update rule, written out in NumPy."""

import keras
import numpy as np
import pytest

import tfadakd
from tfadakd.optimizers import SGD, step_decay


def torch_sgd_reference(params, grads_per_step, lrs, momentum, weight_decay, nesterov):
    """torch.optim.SGD (dampening 0): d = g + wd p; buf = mu buf + d (buf = d at step 1); p -= lr d'."""
    params = [p.astype("float64").copy() for p in params]
    buffers = [None] * len(params)
    for grads, lr in zip(grads_per_step, lrs):
        for i, (p, g) in enumerate(zip(params, grads)):
            d = g + weight_decay * p
            if momentum:
                buffers[i] = d.copy() if buffers[i] is None else momentum * buffers[i] + d
                d = d + momentum * buffers[i] if nesterov else buffers[i]
            params[i] = p - lr * d
    return params


@pytest.mark.parametrize("nesterov", [False, True])
def test_matches_torch_update_rule_across_a_learning_rate_decay(nesterov):
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (4,)]
    initial = [rng.normal(size=s).astype("float32") for s in shapes]
    grads = [[rng.normal(size=s).astype("float32") for s in shapes] for _ in range(6)]
    lrs = [0.1, 0.1, 0.1, 0.01, 0.01, 0.001]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([2, 4], [0.1, 0.01, 0.001])
    variables = [keras.Variable(p) for p in initial]
    optimizer = SGD(schedule, momentum=0.9, weight_decay=5e-4, nesterov=nesterov)
    for step_grads in grads:
        optimizer.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in step_grads], variables))
    expected = torch_sgd_reference(initial, grads, lrs, 0.9, 5e-4, nesterov)
    for variable, want in zip(variables, expected):
        np.testing.assert_allclose(variable.numpy(), want, rtol=1e-5, atol=1e-7)


def test_differs_from_keras_sgd_after_a_decay():
    """Keras' SGD keeps lr * grad in its velocity, so the two diverge once the rate changes."""
    rng = np.random.default_rng(1)
    initial = rng.normal(size=(5,)).astype("float32")
    grads = [rng.normal(size=(5,)).astype("float32") for _ in range(4)]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [0.1, 0.01])
    ours, theirs = keras.Variable(initial), keras.Variable(initial)
    a, b = SGD(schedule, momentum=0.9, weight_decay=0.0), keras.optimizers.SGD(schedule, momentum=0.9)
    for g in grads:
        a.apply_gradients([(keras.ops.convert_to_tensor(g), ours)])
        b.apply_gradients([(keras.ops.convert_to_tensor(g), theirs)])
    assert np.abs(ours.numpy() - theirs.numpy()).max() > 1e-3


def test_weight_decay_reaches_batch_norm_and_bias():
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 3, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(beta_initializer="ones")(x)
    outputs = keras.layers.Dense(2, bias_initializer="ones")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    before = [v.numpy().copy() for v in model.trainable_variables]
    optimizer = SGD(1.0, momentum=0.0, weight_decay=0.1)
    zero = [keras.ops.zeros_like(v) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zero, model.trainable_variables))
    # with a zero gradient the step is p - lr * wd * p = 0.9 p, for gamma, beta and bias alike
    assert len(before) == 5
    for b, v in zip(before, model.trainable_variables):
        np.testing.assert_allclose(v.numpy(), 0.9 * b, rtol=1e-6)


def test_config_round_trip():
    optimizer = SGD(0.05, momentum=0.8, weight_decay=1e-4, nesterov=True)
    clone = SGD.from_config(optimizer.get_config())
    assert (clone.momentum, clone.coupled_weight_decay, clone.nesterov) == (0.8, 1e-4, True)
    assert isinstance(keras.optimizers.deserialize(keras.optimizers.serialize(optimizer)), SGD)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"momentum": 1.0}, "momentum.*1.0"), ({"weight_decay": -1.0}, "weight_decay.*-1.0"), ({"learning_rate": -0.1}, "learning_rate.*-0.1")],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SGD(**kwargs)


def test_step_decay_switches_at_the_first_step_of_each_milestone_epoch():
    schedule = step_decay(0.05, steps_per_epoch=10, milestones=(2, 4), gamma=0.1)
    lr = [float(schedule(step)) for step in (0, 19, 20, 39, 40, 1000)]
    np.testing.assert_allclose(lr, [0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005], rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[4, 2\]"):
        step_decay(0.05, 10, milestones=(4, 2))
    assert tfadakd.optimizers.SGD is SGD


def test_step_decay_without_milestones_is_a_constant_rate():
    """--lr_milestones= (empty) asks for a constant learning rate: no schedule, the rate itself."""
    assert tfadakd.optimizers.step_decay(0.05, steps_per_epoch=10, milestones=[]) == 0.05
    optimizer = tfadakd.optimizers.SGD(tfadakd.optimizers.step_decay(0.05, 10, []))
    variable = keras.Variable([1.0])
    for _ in range(3):
        optimizer.apply_gradients([(keras.ops.convert_to_tensor([0.0]), variable)])
    np.testing.assert_allclose(float(optimizer.learning_rate), 0.05)
