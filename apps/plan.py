"""What a run will cost, before and while it runs: its phases, their epochs and steps, and wall-time
estimates from measured step times.

Every phase's cost is counted in forward passes of one image through its models (multiply-accumulates,
`tfadakd.models.flops`): a training step of model M costs about 3 forward passes of M (forward and
backward), a distillation step 3 of the student plus 1 of the teacher (none when the teacher's logits
come from a cache), an evaluation pass 1. One measured step time (a few real batches) gives seconds
per unit; the phase being trained is then estimated from its own epochs as they finish.
"""

import time

#: A plan longer than this on a machine without an accelerator gets a one-line warning.
LONG_PLAN_HOURS = 12.0


class Phase:
    """One phase of a run: `epochs` epochs of `train_steps` training steps plus `eval_steps` evaluation
    steps, each step of `batch_size` images costing `train_units` / `eval_units` forward passes per image."""

    def __init__(self, name, epochs, train_steps, eval_steps, batch_size, train_units, eval_units):
        self.name, self.epochs = name, int(epochs)
        self.train_steps, self.eval_steps, self.batch_size = int(train_steps), int(eval_steps), int(batch_size)
        self.train_units, self.eval_units = float(train_units), float(eval_units)

    @property
    def units_per_epoch(self):
        return self.batch_size * (self.train_steps * self.train_units + self.eval_steps * self.eval_units)

    def seconds(self, seconds_per_unit, epochs=None):
        """Estimated wall time of `epochs` (default: all) epochs of this phase."""
        return (self.epochs if epochs is None else epochs) * self.units_per_epoch * seconds_per_unit


class Plan:
    """The phases of a run, in order, and where it runs (`device`, `precision`: for the printout)."""

    def __init__(self, phases, device, precision, accelerator=False):
        self.phases = [p for p in phases if p.epochs > 0]
        self.device, self.precision, self.accelerator = device, precision, accelerator

    def total_seconds(self, seconds_per_unit):
        return sum(p.seconds(seconds_per_unit) for p in self.phases)

    def describe(self, seconds_per_unit=None):
        """The plan as text lines: one per phase, a total, and a warning for a long plan on a CPU."""
        lines = [f"Plan on {self.device} ({self.precision}):"]
        for p in self.phases:
            cost = "" if seconds_per_unit is None else f", about {format_duration(p.seconds(seconds_per_unit))}"
            lines.append(f"  {p.name}: {p.epochs} epochs x {p.train_steps} steps of {p.batch_size}{cost}")
        if seconds_per_unit is not None:
            total = self.total_seconds(seconds_per_unit)
            lines.append(f"  total: about {format_duration(total)} (estimated from measured step times)")
            if total > LONG_PLAN_HOURS * 3600 and not self.accelerator:
                lines.append(
                    f"  This plan takes more than {LONG_PLAN_HOURS:.0f} hours here, without an accelerator: the "
                    "recipe is meant for a GPU. Alternatives: run it on a GPU, try apps/flags/quick.flags, or "
                    "pass a trained teacher with --teacher_path.")
        return lines


def seconds_per_unit(step, units_per_step, batches=3, timer=time.perf_counter):
    """Times `batches` calls of `step()` after one untimed call (tracing); returns seconds per unit.

    Arguments:
        step: a callable running one real training step.
        units_per_step: its cost in forward passes of one image (`Phase.train_units * batch_size`).
        batches: timed calls (median taken).
        timer: the clock (injectable for tests).
    """
    step()
    durations = []
    for _ in range(batches):
        start = timer()
        step()
        durations.append(timer() - start)
    durations.sort()
    return durations[len(durations) // 2] / float(units_per_step)


def format_duration(seconds):
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """Keeps the plan's estimate current as epochs finish: call `epoch_done(phase, epoch, seconds)`.

    The phase being trained is estimated from the mean of its own measured epochs; the later phases
    from the seconds per unit that those epochs imply.
    """

    def __init__(self, plan, seconds_per_unit=None, timer=time.perf_counter):
        self.plan, self.unit = plan, seconds_per_unit
        self.timer, self.started = timer, timer()
        self.epoch_times = {}

    def epoch_done(self, phase_name, epoch, epochs_total, seconds):
        """Records epoch `epoch` (0-based) of `phase_name`; returns (progress line, logged values)."""
        phase = next(p for p in self.plan.phases if p.name == phase_name)
        times = self.epoch_times.setdefault(phase_name, [])
        times.append(float(seconds))
        mean = sum(times) / len(times)
        self.unit = mean / phase.units_per_epoch
        phase_left = mean * (epochs_total - epoch - 1)
        later = self.plan.phases[self.plan.phases.index(phase) + 1:]
        plan_left = phase_left + sum(p.seconds(self.unit) for p in later)
        elapsed = self.timer() - self.started
        line = (f"[plan] {phase_name}: epoch {epoch + 1}/{epochs_total}, elapsed {format_duration(elapsed)}, "
                f"left: {format_duration(phase_left)} for this phase, {format_duration(plan_left)} in all")
        return line, {"plan_phase_seconds_left": phase_left, "plan_seconds_left": plan_left}


def callback(progress, phase_name, epochs_total, warmup_batches=3, timer=time.perf_counter, out=print):
    """A Keras callback for the phase `phase_name`: after its first `warmup_batches` + 1 real batches it
    prints the whole plan's estimate (the batches count in the run); after each epoch, one progress
    line, and `plan_phase_seconds_left` / `plan_seconds_left` in the epoch logs (metrics.csv)."""
    import keras

    phase = next(p for p in progress.plan.phases if p.name == phase_name)

    class PlanCallback(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.batch_times, self.estimated = [], progress.unit is not None

        def on_train_batch_begin(self, batch, logs=None):
            self.batch_start = timer()

        def on_train_batch_end(self, batch, logs=None):
            if self.estimated:
                return
            self.batch_times.append(timer() - self.batch_start)
            if len(self.batch_times) > warmup_batches:  # the first one traces the step: left out
                times = sorted(self.batch_times[1:])
                progress.unit = times[len(times) // 2] / (phase.batch_size * phase.train_units)
                self.estimated = True
                for line in progress.plan.describe(progress.unit):
                    out(line)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = timer()

        def on_epoch_end(self, epoch, logs=None):
            line, values = progress.epoch_done(phase_name, epoch, epochs_total, timer() - self.epoch_start)
            out(line)
            if logs is not None:
                logs.update(values)

    return PlanCallback()
