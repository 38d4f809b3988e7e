"""Finding or preparing the CIFAR data with tensorflow-datasets, and saying plainly why when it cannot.

`prepared_builder` returns a tfds builder whose data is on disk: already prepared in the tfds data dir,
else prepared once from the official archive in a manual dir (checked against tfds' registered
SHA-256), else downloaded. Before a download, a bounded probe (`_internet_reachable`) checks that the
archive's host answers, so an offline machine fails in seconds with `DataNotFoundError` (which lists
every remedy) instead of stalling in tfds' retries.

Example:

```python
from tfadakd.data import cifar

builder = cifar.prepared_builder("cifar100", data_dir="~/tensorflow_datasets", download=False)
test = builder.as_dataset(split="test", as_supervised=True)
```
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.error
import urllib.request
from typing import Optional

_ARCHIVES = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
}

# How long the pre-download connectivity probe may take before we call the machine offline.
_PROBE_TIMEOUT_S = 10.0


class DataNotFoundError(FileNotFoundError):
    """The CIFAR data is neither prepared locally nor obtainable (no manual archive, no internet)."""


def _archive_name(name):
    return _ARCHIVES[name].rsplit("/", 1)[-1]


def _missing_message(name, data_dir, manual_dir, reason):
    archive = _archive_name(name)
    if data_dir is None:
        default = os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
        where = f"{os.path.expanduser(default)} (tfds' default: $TFDS_DATA_DIR or ~/tensorflow_datasets)"
    else:
        where = data_dir
    return (
        f"{name} data not found: {reason}\n"
        f"Searched the tfds data dir: {where}"
        + (f"; manual dir: {manual_dir}" if manual_dir is not None else "")
        + ".\nProvide one of:\n"
        f"  1. a tfds data dir that holds a prepared {name}/3.x dataset: argument `data_dir` "
        f"(flag --data_dir, or the TFDS_DATA_DIR environment variable);\n"
        f"  2. a manual dir holding the official archive named {archive} ({_ARCHIVES[name]}): "
        f"argument `manual_dir` (flag --manual_dir); it is checked against tfds' registered SHA-256 and "
        f"prepared into the data dir once;\n"
        f"  3. internet access (with download=True), so that tfds downloads {archive}."
    )


def _internet_reachable(url: str, timeout: float = _PROBE_TIMEOUT_S) -> Optional[str]:
    """Returns None if `url`'s host answers within `timeout` seconds, else a short reason string.

    tfds' downloader (requests, with retries and no timeout) can stall for minutes on a machine whose
    network drops packets; this bounded probe (honouring the usual *_PROXY variables) fails fast instead.
    """
    result = {}

    def probe():
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=timeout):
                pass
        except urllib.error.HTTPError:
            pass  # The host answered: the network works (tfds handles the HTTP status itself).
        except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
            result["error"] = f"{type(e).__name__}: {e}"

    thread = threading.Thread(target=probe, daemon=True)  # DNS lookups ignore urlopen's timeout
    thread.start()
    thread.join(timeout + 1.0)
    if thread.is_alive():
        return f"no answer from {url} within {timeout:.0f} s"
    return result.get("error")


def prepared_builder(name, data_dir=None, manual_dir=None, download=True):
    """Returns a tfds builder of `name` whose data is prepared, preparing it if allowed.

    What `load_cifar`, `cifar_epochs` and `tfadakd.data.open_dataset` read the CIFAR data with.

    Arguments:
        name: `"cifar10"` or `"cifar100"` (not checked here: the pipelines check it first).
        data_dir: tfds data dir; `None` for tfds' default (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        manual_dir: A folder holding the official archive, prepared into `data_dir` without a network.
        download: Whether tfds may download the archive when the dataset is not prepared.

    Returns:
        The `tfds` builder, its data on disk.

    Raises:
        DataNotFoundError: when the data is not prepared (or incompletely) in `data_dir` and can be neither
            prepared from `manual_dir` nor downloaded; the message lists every remedy.
    """
    import tensorflow_datasets as tfds

    if data_dir is not None:
        data_dir = os.path.expanduser(os.fspath(data_dir))
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        missing = [str(f) for split in builder.info.splits.values() for f in split.filepaths if not os.path.exists(f)]
        if missing:
            raise DataNotFoundError(
                f"The prepared {name} data set in {builder.data_dir} is incomplete: dataset_info.json is there "
                f"but {len(missing)} data file(s) are missing ({', '.join(os.path.basename(m) for m in missing)}), "
                f"e.g. after an interrupted copy or download. Remove {builder.data_dir} and prepare it again "
                "(with internet access, or `manual_dir` / --manual_dir pointing at the official archive), or "
                "pass `data_dir` / --data_dir pointing at a complete copy."
            )
        return builder

    config_kwargs = {}
    if manual_dir is not None:
        manual_dir = os.path.expanduser(os.fspath(manual_dir))
        archive = os.path.join(manual_dir, _archive_name(name))
        if not os.path.isfile(archive):
            raise DataNotFoundError(
                _missing_message(name, data_dir, manual_dir, f"no prepared dataset, and no {archive}.")
            )
        # The archive is there: no network needed (tfds finds it by its registered file name).
        config_kwargs["manual_dir"] = manual_dir
    elif not download:
        raise DataNotFoundError(
            _missing_message(name, data_dir, manual_dir, "no prepared dataset and download=False.")
        )
    else:
        problem = _internet_reachable(_ARCHIVES[name])
        if problem is not None:
            raise DataNotFoundError(
                _missing_message(name, data_dir, manual_dir, f"no prepared dataset, and download failed ({problem}).")
            )
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(**config_kwargs))
    except DataNotFoundError:
        raise
    except Exception as e:
        if "checksum" in str(e).lower():
            raise DataNotFoundError(
                _missing_message(
                    name, data_dir, manual_dir,
                    f"the archive does not match the official release ({type(e).__name__}: {e}).",
                )
            ) from e
        network = (ConnectionError, TimeoutError, socket.gaierror, urllib.error.URLError)
        if isinstance(e, network) or type(e).__module__.startswith(("requests", "urllib3")):
            raise DataNotFoundError(
                _missing_message(name, data_dir, manual_dir, f"download failed ({type(e).__name__}: {e}).")
            ) from e
        raise
    return builder
