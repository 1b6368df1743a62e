"""Sources (a zip or a folder, read in place) and the layouts that give their files labels.

Layouts recognised:
- Kaggle flat: one folder of `<label>.<number>.<ext>` files (`train/cat.12.jpg`);
- PetImages: `PetImages/<Class>/<file>` (Microsoft's archive; labels lower-cased);
- class folders: `<root>/<class>/<file>` with any number of classes, `<root>` being the deepest
  folder that holds every image (so one top folder, or several, is fine).
"""

import dataclasses
import os
import re
import threading
import zipfile
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath

from smallcnn.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
# Files operating systems leave behind; never images, never worth a decode.
JUNK_NAMES = {"thumbs.db", "ehthumbs.db", "desktop.ini", ".ds_store"}
KAGGLE_NAME = re.compile(r"^([A-Za-z][A-Za-z_-]*)\.\d+\.[A-Za-z0-9]+$")


@dataclasses.dataclass(frozen=True)
class Member:
    name: str  # path inside the source, as the archive or the file system spells it
    size: int  # bytes (uncompressed)


class ZipSource:
    """A zip archive read in place: members are read one by one into memory, never extracted."""

    def __init__(self, path, max_archive_bytes):
        self.path = Path(path)
        try:
            with zipfile.ZipFile(self.path) as archive:
                infos = [info for info in archive.infolist() if not info.is_dir()]
        except (zipfile.BadZipFile, OSError) as error:
            raise UserError(f"cannot read {self.path} as a zip archive: {error}") from None
        total = sum(info.file_size for info in infos)
        if total > max_archive_bytes:
            raise UserError(
                f"{self.path} claims {total:,} uncompressed bytes, more than "
                f"data.max_archive_bytes={max_archive_bytes:,}; nothing was extracted. Raise "
                "data.max_archive_bytes if you trust this archive"
            )
        # A name may appear twice in a zip; the first entry is the one that counts.
        self._infos = {}
        for info in infos:
            self._infos.setdefault(info.filename, info)
        self.members = [Member(info.filename, info.file_size) for info in infos]
        self.repeated = {name for name, n in Counter(m.name for m in self.members).items() if n > 1}
        self._local = threading.local()

    def read(self, name):
        # One ZipFile per thread: each keeps its own file position.
        archive = getattr(self._local, "archive", None)
        if archive is None:
            archive = self._local.archive = zipfile.ZipFile(self.path)
        with archive.open(self._infos[name]) as member:
            return member.read()

    def local_path(self, name):
        return None


class DirectorySource:
    """A folder read in place (links to class folders or files followed); split copies from it."""

    def __init__(self, path):
        self.path = Path(path)
        # A dangling link is listed with size 0, so that the manifest shows it as unreadable.
        self.members = [
            Member(name, stat.st_size if stat else 0) for name, stat in walk_files(self.path)
        ]
        self.repeated = set()

    def read(self, name):
        return (self.path / name).read_bytes()

    def local_path(self, name):
        return self.path / name


def walk_files(root):
    """(path relative to `root` in POSIX form, os.stat_result or None if dangling) of every file
    under `root`, sorted, following links to folders: users link class folders in from other
    disks. A link back to a folder above it is a loop and is refused."""
    root = Path(root)

    def visit(folder, relative, ancestors):
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            raise UserError(f"cannot list {folder} of the data source: {error}") from None
        for entry in entries:
            name = f"{relative}{entry.name}"
            try:
                is_folder = entry.is_dir()  # follows links
            except OSError:
                is_folder = False
            if is_folder:
                identity = _identity(entry.path)
                if identity in ancestors:
                    raise UserError(
                        f"{Path(entry.path)} in the data source links back to a folder that "
                        "contains it (a loop); remove that link or point data.path elsewhere"
                    )
                yield from visit(entry.path, f"{name}/", ancestors | {identity})
                continue
            try:
                yield name, entry.stat()
            except OSError:
                yield name, None

    return visit(root, "", frozenset({_identity(root)}))


def _identity(folder):
    stat = os.stat(folder)
    return stat.st_dev, stat.st_ino


def open_source(path, max_archive_bytes):
    """The zip or folder at `path`."""
    path = Path(path)
    if path.is_dir():
        return DirectorySource(path)
    if not path.exists():
        raise UserError(f"the data source {path} does not exist (check data.path)")
    return ZipSource(path, max_archive_bytes)


def parts_of(name):
    """Path components of a member name, whatever separator the archive used."""
    return [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]


def unsafe_reason(name):
    """Why a member name could escape an extraction folder, or None if it cannot."""
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
        return "absolute path"
    if ".." in normalised.split("/"):
        return "'..' in the path"
    if "\0" in name:
        return "NUL byte in the name"
    return None


def is_junk(name):
    """Operating-system clutter: Thumbs.db, .DS_Store, __MACOSX/, hidden files and folders."""
    parts = parts_of(name)
    return (
        any(part == "__MACOSX" or part.startswith(".") for part in parts)
        or not parts
        or parts[-1].lower() in JUNK_NAMES
    )


@dataclasses.dataclass
class Layout:
    kind: str  # "kaggle flat", "PetImages" or "class folders"
    root: str  # folder holding the images (Kaggle) or the class folders, "" for the top
    labels: dict  # member name -> label, for the members inside the layout

    def describe(self):
        return f"{self.kind} layout under {self.root or 'the top folder'}"


def find_layout(names, source_name="the source"):
    """The layout of these member names (safe, junk removed), and the label of each."""
    images = [name for name in names if PurePosixPath(name.lower()).suffix in IMAGE_SUFFIXES]
    if not images:
        raise UserError(
            f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {source_name}; expected "
            "train/cat.1.jpg (Kaggle), PetImages/Cat/1.jpg or <class>/<image> folders"
        )
    folders = defaultdict(list)
    for name in images:
        folders[tuple(parts_of(name)[:-1])].append(name)

    # Kaggle flat: most images in one folder, named <label>.<number>.<ext>.
    best_folder, best = None, {}
    for folder, members in folders.items():
        matched = {}
        for name in members:
            match = KAGGLE_NAME.match(parts_of(name)[-1])
            if match:
                matched[name] = match.group(1).lower()
        if len(matched) > len(best):
            best_folder, best = folder, matched
    if len(set(best.values())) >= 2 and 2 * len(best) > len(images):
        return Layout("kaggle flat", "/".join(best_folder), best)

    root = os.path.commonprefix(list(folders))
    petimages = bool(root) and root[-1].lower() == "petimages"
    labels = {}
    for name in names:
        parts = parts_of(name)
        if len(parts) >= len(root) + 2 and tuple(parts[: len(root)]) == tuple(root):
            label = parts[len(root)]
            labels[name] = label.lower() if petimages else label
    found = sorted(set(labels.values()))
    if len(found) < 2:
        where = "/".join(root) or "the top folder"
        raise UserError(
            f"found {len(found)} class folder(s) under {where} of {source_name} "
            f"({', '.join(found) or 'none'}); a classifier needs at least two. Expected "
            "train/cat.1.jpg (Kaggle), PetImages/Cat/1.jpg or <class>/<image> folders"
        )
    return Layout("PetImages" if petimages else "class folders", "/".join(root), labels)
