"""The reference recipe's optimizer: PyTorch's SGD semantics in a Keras optimizer.

The CIFAR distillation recipe (RepDistiller, mdistiller) is `torch.optim.SGD(lr, momentum=0.9,
weight_decay=5e-4)`. Two details differ from `keras.optimizers.SGD`:

- Weight decay is *coupled*: PyTorch adds `weight_decay * param` to the gradient of every parameter
  (convolution kernels, biases and batch-norm gamma and beta alike) before momentum, which is an L2
  penalty `weight_decay / 2 * ||param||^2` on every parameter. Keras' `weight_decay` argument is
  decoupled (AdamW-style: applied to the weights outside momentum), and kernel regularizers usually
  skip biases and batch norm.
- Momentum is accumulated on gradients, `buf = momentum * buf + grad; param -= lr * buf`, so that a
  learning-rate step decay takes effect at once; Keras accumulates `lr * grad` in its velocity.

`SGD` below reproduces PyTorch's update exactly, for any model, with no regularizers in the model.
"""

import keras

from tfadakd import _compat


@keras.saving.register_keras_serializable(package="tfadakd")
class SGD(keras.optimizers.Optimizer):
    """Stochastic gradient descent with PyTorch's coupled weight decay and momentum.

    The update of each trainable variable `p` with gradient `g` is, as `torch.optim.SGD` with
    `dampening=0`:

        g = g + weight_decay * p
        buf = momentum * buf + g            (buf starts at 0, so its first value is g)
        g = g + momentum * buf  if nesterov else  buf
        p = p - learning_rate * g

    Arguments:
        learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: momentum factor in [0, 1).
        weight_decay: coupled L2 factor applied to every variable the optimizer updates (5e-4 in the
            CIFAR recipe); 0 disables it.
        nesterov: use Nesterov momentum.
        **kwargs: the other `keras.optimizers.Optimizer` arguments (`clipnorm`, `name`, ...).

    Raises:
        ValueError: for a negative learning rate or weight decay, or momentum outside [0, 1).

    Example:

    ```python
    optimizer = tfadakd.optimizers.SGD(0.05, momentum=0.9, weight_decay=5e-4)
    distiller.compile(optimizer=optimizer, metrics=["accuracy"])
    ```
    """

    def __init__(
        self,
        learning_rate=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        nesterov=False,
        name="sgd_torch",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if isinstance(learning_rate, (int, float)) and learning_rate < 0:
            raise ValueError(f"`learning_rate` must be >= 0, got {learning_rate!r}.")
        if not 0 <= momentum < 1:
            raise ValueError(f"`momentum` must be in [0, 1), got {momentum!r}.")
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay!r}.")
        self.momentum = float(momentum)
        self.coupled_weight_decay = float(weight_decay)
        self.nesterov = bool(nesterov)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentum_buffers = []
        if self.momentum:
            self.momentum_buffers = [
                self.add_variable_from_reference(variable, "momentum") for variable in variables
            ]

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay:
            gradient = ops.add(gradient, ops.multiply(self.coupled_weight_decay, variable))
        if self.momentum:
            buffer = self.momentum_buffers[_compat.variable_index(self, variable)]
            self.assign(buffer, ops.add(ops.multiply(self.momentum, buffer), gradient))
            if self.nesterov:
                gradient = ops.add(gradient, ops.multiply(self.momentum, buffer))
            else:
                gradient = buffer
        self.assign_sub(variable, ops.multiply(learning_rate, gradient))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.coupled_weight_decay,
                "nesterov": self.nesterov,
            }
        )
        return config


def step_decay(learning_rate, steps_per_epoch, milestones=(150, 180, 210), gamma=0.1):
    """The recipe's schedule: `learning_rate`, multiplied by `gamma` at each milestone epoch.

    Arguments:
        learning_rate: the initial rate (0.05 in the CIFAR recipe).
        steps_per_epoch: optimizer steps per epoch, to turn epochs into steps.
        milestones: increasing epochs at which the rate decays.
        gamma: the decay factor.

    Returns:
        A `keras.optimizers.schedules.PiecewiseConstantDecay` over optimizer iterations; with no
        milestones, the constant `learning_rate` itself (a float).

    Raises:
        ValueError: for non-increasing milestones or non-positive `steps_per_epoch`.

    Example:

    >>> schedule = step_decay(0.05, steps_per_epoch=782)   # 240-epoch CIFAR recipe
    """
    if int(steps_per_epoch) <= 0:
        raise ValueError(f"`steps_per_epoch` must be positive, got {steps_per_epoch!r}.")
    milestones = [int(m) for m in milestones]
    if any(b <= a for a, b in zip(milestones, milestones[1:])) or any(m <= 0 for m in milestones):
        raise ValueError(f"`milestones` must be positive and increasing, got {milestones!r}.")
    if not milestones:  # a constant rate (Keras' PiecewiseConstantDecay needs at least one boundary)
        return float(learning_rate)
    # Keras keeps values[i] while `step <= boundaries[i]`; step m * steps_per_epoch is the first
    # step of epoch m (0-based), which must already use the decayed rate, as torch's MultiStepLR.
    boundaries = [m * int(steps_per_epoch) - 1 for m in milestones]
    values = [learning_rate * gamma**i for i in range(len(milestones) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
