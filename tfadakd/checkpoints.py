"""Resumable training state: checkpoints written atomically, verified by SHA-256, at epoch ends or mid-epoch.

`ResumeCheckpoint` is the callback `tfadakd.runs.fit_run` uses; it works in any `fit`:

```python
resume = tfadakd.callbacks.ResumeCheckpoint("saved_models/run/checkpoints")
initial_epoch = resume.restore(distiller)           # 0 on a fresh run
distiller.fit(ds, epochs=240, initial_epoch=initial_epoch, callbacks=[resume])
```
"""

import hashlib
import os
import re
import warnings

import keras

from tfadakd import _compat
from tfadakd.files import atomic_write_bytes, atomic_write_json, file_sha256, read_json, refuse_non_finite
from tfadakd.files import remove_stale_temporaries


class CheckpointError(ValueError):
    """A resume checkpoint cannot be used (another model's, or damaged); the message names what to remove."""


_NAME = re.compile(r"^epoch-(\d+)(?:-step-(\d+))?\.weights\.h5$")


def checkpoint_name(epoch, step=0):
    """The file name of the checkpoint after `step` batches of 0-based `epoch` (0: the whole epoch)."""
    return f"epoch-{epoch}.weights.h5" if not step else f"epoch-{epoch}-step-{step}.weights.h5"


def position_of(name):
    """`(epoch, step)` to resume at after checkpoint `name`: the next epoch from its start, or the same
    epoch after `step` batches for a mid-epoch checkpoint."""
    match = _NAME.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a checkpoint file name (epoch-N.weights.h5 or epoch-N-step-B.weights.h5).")
    epoch, step = int(match.group(1)), int(match.group(2) or 0)
    return (epoch, step) if step else (epoch + 1, 0)


class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves the whole training state after every epoch (or mid-epoch, on request) and restores it.

    The state is the model's weights with the optimizer's variables (momentum, iteration count) and,
    for a `Distiller`, its epoch counter: the content of a `.weights.h5` file, built in memory and
    written under a temporary name, fsynced and renamed (`epoch-N.weights.h5`, or
    `epoch-N-step-B.weights.h5` after B batches of epoch N). Then `state.json` is replaced atomically:
    it names the newest checkpoint, the ones kept, and each one's SHA-256. `restore` checks a file
    against its SHA-256 before loading it, so a file changed or damaged after it was written is never
    trusted: it falls back to an older kept checkpoint (with a warning), or refuses naming the folder.

    What differs from `keras.callbacks.BackupAndRestore`: it overwrites `latest.weights.h5` in place
    and then its epoch file (a kill during the write leaves a truncated file, which only its
    `double_checkpoint=True` recovers from; a kill between the two, new weights with the old epoch);
    here nothing is written in place, non-finite weights are never written (`on_epoch_end` raises
    `tfadakd.distiller.NonFiniteError` and the last good checkpoint stays), a checkpoint of another
    model is refused with a message naming the folder, files are verified, and a full disk is a plain
    `OSError` naming the file (HDF5 never writes to the disk itself).

    Arguments:
        directory: folder for the checkpoints (created if missing).
        keep: how many epoch checkpoints to keep; with 2 or more, `restore` falls back to an older
            one when the newest file is damaged.

    Attributes:
        initial_step: after `restore`, how many batches of the epoch it returns were already trained
            (0 unless the run stopped mid-epoch, see `save_mid_epoch`).
    """

    def __init__(self, directory, keep=1):
        super().__init__()
        self.directory = os.fspath(directory)
        self.keep = max(1, int(keep))
        self.initial_step = 0
        os.makedirs(self.directory, exist_ok=True)

    @property
    def state_path(self):
        return os.path.join(self.directory, "state.json")

    def state(self):
        """The saved state (`{"epoch": last complete 0-based epoch, "file": ..., ...}`), or None."""
        return read_json(self.state_path)

    # ------------------------------------------------------------------ restore
    def restore(self, model):
        """Loads the newest verified checkpoint into `model` (compiled); returns the epoch to start at.

        `initial_step` then says how many of that epoch's batches were trained (mid-epoch checkpoint).
        Leftover temporary files of a killed process, and checkpoint files that `state.json` no longer
        names (pruned by a process killed before it removed them), are deleted first.

        Raises:
            CheckpointError (a `ValueError`): if `state.json` is damaged, the checkpoint does not fit
                the model (another architecture), or no kept checkpoint file can be verified and read;
                the message says which folder to remove to start afresh.
        """
        remove_stale_temporaries(self.directory)
        self.initial_step = 0
        state = self._valid_state()
        if state is None:
            return 0
        self._remove_unnamed(state)
        if getattr(model, "optimizer", None) is not None:
            model.optimizer.build(model.trainable_variables)
        if state.get("fingerprint", fingerprint(model)) != fingerprint(model):
            raise CheckpointError(
                f"Cannot resume from {os.path.join(self.directory, state['file'])}: its variables differ in "
                "number or shapes from this model's. It was written by a different model or configuration; "
                f"remove {self.directory} (or choose another run directory) to start afresh."
            )
        candidates = [state["file"]] + [f for f in reversed(state.get("files", [])) if f != state["file"]]
        failures = []
        for name in candidates:
            path = os.path.join(self.directory, name)
            problem = self._verify(path, state.get("sha256", {}).get(name))
            if problem is None:
                try:
                    model.load_weights(path)
                except Exception as error:  # noqa: BLE001 - h5py raises OSError, Keras ValueError/KeyError
                    problem = f"{type(error).__name__}: {error}"
            if problem is not None:
                failures.append(f"{path}: {problem}")
                continue
            if failures:
                warnings.warn(
                    f"The newest checkpoint could not be used ({failures[0]}); resuming from the older "
                    f"{path} instead.", stacklevel=2,
                )
            epoch, self.initial_step = position_of(name)
            return epoch
        older = "and so is every older one kept" if len(candidates) > 1 else "and no older one is kept"
        raise CheckpointError(
            f"Cannot resume: the checkpoint named in {self.state_path} is missing or damaged "
            f"(truncated, corrupt or changed since it was written), {older}. "
            + " ".join(failures)
            + f" Remove the folder {self.directory} to train this run again from its first epoch (or "
            "choose another run directory)."
        )

    def _valid_state(self):
        """state.json's content, None when there is none; `CheckpointError` when it cannot be right."""
        try:
            state = self.state()
        except ValueError as error:  # not JSON: state.json is written atomically, so rather a disk fault
            state, reason = None, str(error)
        else:
            if state is None:
                return None
            reason = _state_problem(state)
            if reason is None:
                return state
        raise CheckpointError(
            f"Cannot resume: {self.state_path} is damaged ({reason}). Remove the folder {self.directory} "
            "to train this run again from its first epoch (or choose another run directory)."
        )

    @staticmethod
    def _verify(path, expected):
        """None if `path` exists and matches `expected` (its SHA-256; None: written before digests), else why not."""
        if not os.path.exists(path):
            return "the file does not exist"
        if expected is not None:
            actual = file_sha256(path)
            if actual != expected:
                return f"its SHA-256 is {actual[:12]}..., state.json recorded {expected[:12]}..."
        return None

    def _remove_unnamed(self, state):
        named = set(state.get("files", [])) | {state["file"]}
        for name in os.listdir(self.directory):
            if _NAME.match(name) and name not in named:
                os.remove(os.path.join(self.directory, name))

    # ------------------------------------------------------------------ save
    def on_epoch_end(self, epoch, logs=None):
        self._save(epoch, 0)

    def save_mid_epoch(self, epoch, step):
        """Writes a checkpoint after `step` batches of 0-based `epoch`; `restore` then resumes there.

        The epoch's end-of-epoch checkpoint replaces it; until then the last complete epoch's file is
        kept as its fallback. `tfadakd.graceful_stop.GracefulStop` calls it when a stop signal arrives.
        """
        self._save(epoch, int(step))

    def _save(self, epoch, step):
        where = f"the checkpoint of epoch {epoch + 1}" + (f" (after {step} batches)" if step else "")
        refuse_non_finite(self.model, where, epoch, f"{self.state_path} still names the last good one.")
        name = checkpoint_name(epoch, step)
        data = _compat.weights_to_bytes(self.model)
        atomic_write_bytes(os.path.join(self.directory, name), data)
        previous = self.state() or {}
        complete = [f for f in previous.get("files", []) if f != name and not position_of(f)[1]]
        kept = complete[-self.keep:] + [name] if step else (complete + [name])[-self.keep:]
        digests = previous.get("sha256", {})
        state = {
            "epoch": epoch if not step else epoch - 1,  # the last complete epoch
            "step": step,
            "file": name,
            "files": kept,
            "sha256": {**{f: digests[f] for f in kept if f in digests}, name: hashlib.sha256(data).hexdigest()},
            "fingerprint": fingerprint(self.model),
        }
        atomic_write_json(self.state_path, state)
        for old in previous.get("files", []) + [previous.get("file")]:
            if old and old not in kept and os.path.exists(os.path.join(self.directory, old)):
                os.remove(os.path.join(self.directory, old))


def _state_problem(state):
    """Why a parsed state.json cannot be a state `ResumeCheckpoint` wrote, or None."""
    if not isinstance(state, dict):
        return f"a JSON {type(state).__name__}, not an object"
    if not isinstance(state.get("file"), str) or not _NAME.match(state["file"]):
        return f"no checkpoint file named: 'file' is {state.get('file')!r}"
    if not isinstance(state.get("epoch"), int):
        return f"'epoch' is {state.get('epoch')!r}, not an integer"
    files = state.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) and _NAME.match(f) for f in files):
        return f"'files' is {files!r}, not a list of checkpoint file names"
    if not isinstance(state.get("sha256", {}), dict):
        return "'sha256' is not an object"
    return None


def fingerprint(model):
    """A short digest of the model's variable shapes and dtypes, in order, to recognize its checkpoints.

    Names are left out: Keras numbers layer names per process (`dense_3`), so they vary between runs.
    """
    text = ";".join(f"{tuple(v.shape)}:{v.dtype}" for v in model.weights)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
