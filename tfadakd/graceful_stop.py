"""Stop on SIGTERM / SIGINT at the next batch boundary, with a checkpoint a rerun resumes from.

A cluster scheduler sends SIGTERM before it preempts a job; Ctrl-C sends SIGINT. `GracefulStop` turns
either into: finish the current batch, write a mid-epoch checkpoint (`ResumeCheckpoint.save_mid_epoch`),
and raise `TrainingInterrupted`. No finished batch is lost. A second signal while it is stopping acts
as the signal normally would (SIGINT: `KeyboardInterrupt` at once).

`tfadakd.runs.fit_run` installs it by default; with plain `fit`:

```python
resume = tfadakd.callbacks.ResumeCheckpoint("run/checkpoints")
initial_epoch = resume.restore(model)
try:
    model.fit(ds, epochs=30, initial_epoch=initial_epoch, callbacks=[resume, GracefulStop(resume)])
except TrainingInterrupted as stop:
    print(stop)                     # says where it stopped; the same script resumes there
```
"""

import signal
import threading

import keras


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint; `signum` is the signal's number."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum


class GracefulStop(keras.callbacks.Callback):
    """Catches `signals` during `fit`; at the next batch end writes a checkpoint and raises `TrainingInterrupted`.

    Place it after every callback that writes at the end of an epoch: a signal that arrives during the
    last batch of an epoch lets the epoch end (validation, saved models, log row, checkpoint), then stops.

    Arguments:
        resume: the run's `tfadakd.callbacks.ResumeCheckpoint`.
        signals: the signals to catch (default SIGTERM and SIGINT). The handlers are installed in
            `on_train_begin` and the previous ones restored in `on_train_end`; outside the main thread
            (where Python cannot install handlers) the callback does nothing.
        step_offset: batches of the first epoch already trained before this `fit` (a run resumed
            mid-epoch trains the rest of that epoch in a `fit` of fewer steps).
        mid_epoch: write a mid-epoch checkpoint (default). Only right when a rerun can continue the
            epoch with exactly its remaining batches (a `tfadakd.data.EpochPipeline`, one worker); with
            False the run stops at the batch boundary and resumes at the start of that epoch.
    """

    def __init__(self, resume, signals=(signal.SIGTERM, signal.SIGINT), step_offset=0, mid_epoch=True):
        super().__init__()
        self.resume = resume
        self.signals = tuple(signals)
        self.step_offset = int(step_offset)
        self.mid_epoch = bool(mid_epoch)
        self.received = None
        self._previous = {}

    # ------------------------------------------------------------------ handlers
    def on_train_begin(self, logs=None):
        self.received = None
        self._pending_offset = self.step_offset  # applies to the first epoch of this fit only
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def on_train_end(self, logs=None):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received is None:
            self.received = signum
            return
        previous = self._previous.get(signum, signal.SIG_DFL)  # a second signal: what it normally does
        self.on_train_end()
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signum, previous)
            signal.raise_signal(signum)

    # ------------------------------------------------------------------ stopping
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._offset, self._pending_offset = epoch, self._pending_offset, 0

    def on_train_batch_end(self, batch, logs=None):
        if self.received is None:
            return
        steps = (self.params or {}).get("steps")
        done = batch + 1
        if steps is not None and done >= steps:
            return  # the epoch's last batch: let the epoch end, then stop in on_epoch_end
        step = self._offset + done
        if not self.mid_epoch:
            self._stop(f"after batch {step} of epoch {self._epoch + 1}, which a rerun trains again from its start "
                       f"(checkpoints in {self.resume.directory})")
        self.resume.save_mid_epoch(self._epoch, step)
        self._stop(f"after batch {step} of epoch {self._epoch + 1} (checkpoint in {self.resume.directory})")

    def on_epoch_end(self, epoch, logs=None):
        if self.received is not None:
            self._stop(f"at the end of epoch {epoch + 1}, all of it saved")

    def _stop(self, where):
        name = signal.Signals(self.received).name
        self.on_train_end()
        raise TrainingInterrupted(
            f"Stopped on {name} {where}. Rerun the same command to resume from there.", self.received)
