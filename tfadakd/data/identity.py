"""What a run's training examples are: a fingerprint recorded with every run, teacher and teacher-logit cache.

A folder of images can change between two commands without changing its path or its counts (an image
swapped between two class folders, one replaced by another); a cache, a resume or a teacher built on the
old files would then serve rows that belong to other images. The fingerprint of a folder slice is the
SHA-256 of its examples in pipeline order: each file's path relative to the folder, its label and its size
(no image is read), with a count and a short digest per class so that a change can be named. The
modification time is left out on purpose: a folder copied to another machine (`cp`, `rsync` without `-t`)
keeps its identity, so that a run resumes there; an image rewritten in place with exactly the same size
goes unnoticed. A tfds data set is fixed by its name, version and split, which its description already records.
Pipelines record the fingerprint as `description["examples"]`; teacher-logit caches, run configs
(`training_data`) and teachers' configs carry it from there.

Example:

```python
fingerprint = folder_fingerprint("/data/flowers", paths, labels, ["daisy", "rose"])
describe_change(old_fingerprint, fingerprint)   # 'class rose: 40 -> 41 files; class daisy: files changed'
```
"""

import hashlib
import os
from typing import Dict, Optional, Sequence


def _file_line(root, path, label):
    try:
        size = os.stat(path).st_size
    except OSError:  # gone since the listing: the pipeline reports it when it reads the file
        size = -1
    relative = os.path.relpath(path, root).replace(os.sep, "/")
    return f"{relative}\t{int(label)}\t{size}\n".encode("utf-8", "surrogateescape")


def folder_fingerprint(root, paths: Sequence[str], labels: Sequence[int], classes: Sequence[str]) -> Dict:
    """The fingerprint of the examples `paths` / `labels` (in pipeline order) of the folder `root`.

    Returns:
        `{"sha256": <hex over every example, in order>, "classes": {name: [count, <12 hex digits>]}}`:
        any file added, removed, renamed, moved to another class or replaced by one of another size changes
        `sha256` and the entries of the classes it concerns.
    """
    whole = hashlib.sha256()
    per_class = {}
    for path, label in zip(paths, labels):
        line = _file_line(root, path, label)
        whole.update(line)
        per_class.setdefault(int(label), []).append(line)
    summary = {}
    for label, lines in sorted(per_class.items()):
        name = classes[label] if 0 <= label < len(classes) else str(label)
        summary[name] = [len(lines), hashlib.sha256(b"".join(sorted(lines))).hexdigest()[:12]]
    return {"sha256": whole.hexdigest(), "classes": summary}


def describe_change(old: Optional[Dict], new: Optional[Dict]) -> str:
    """A short account of how two folder fingerprints differ ('' when they are equal).

    Example:

    >>> describe_change({"sha256": "a", "classes": {"cat": [3, "x"]}}, {"sha256": "b", "classes": {"cat": [4, "y"]}})
    'class cat: 3 -> 4 files'
    """
    if old == new:
        return ""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return "the files were not fingerprinted before" if new else "the files are no longer fingerprinted"
    before, after = old.get("classes") or {}, new.get("classes") or {}
    parts = []
    for name in sorted(set(before) | set(after)):
        if name not in after:
            parts.append(f"class {name} removed")
        elif name not in before:
            parts.append(f"class {name} added ({after[name][0]} files)")
        elif before[name][0] != after[name][0]:
            parts.append(f"class {name}: {before[name][0]} -> {after[name][0]} files")
        elif before[name] != after[name]:
            parts.append(f"class {name}: files replaced, moved or modified")
    if not parts:
        parts.append("the files' order or labels changed")
    shown = parts[:8] + ([f"and {len(parts) - 8} more classes"] if len(parts) > 8 else [])
    return "; ".join(shown)


def describe_data_change(old: Optional[Dict], new: Optional[Dict]) -> str:
    """How two data descriptions (a pipeline's `description`) differ, in one line naming what changed."""
    old, new = old or {}, new or {}
    parts = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) == new.get(key):
            continue
        if key == "examples":
            parts.append(f"files: {describe_change(old.get(key), new.get(key))}")
        else:
            parts.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return "; ".join(parts)
