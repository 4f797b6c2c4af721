"""Download public datasets from their providers' own direct URLs: checked, extracted safely, put in place atomically.

``download("ml-1m", "data")`` fetches the archive to a temporary file next to the destination, checks its size and
checksum when they are known, extracts a zip into a temporary folder (refusing absolute paths, ``..`` and links,
and dropping a single top-level folder), then renames the result to ``data/ml-1m`` in one step. A second call
finds ``data/ml-1m`` and returns at once without touching the network; ``force=True`` downloads again.

Only genuinely public direct URLs are listed. Datasets behind a login (RetailRocket on Kaggle, Taobao on Tianchi,
Diginetica) are not; get them by hand (docs/datasets.md says where). Each provider's terms apply to its data:
nothing here redistributes it.

Command line: ``python -m bertrec.data.download ml-1m data`` (``--list`` shows the names).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

_CHUNK = 1 << 20
_USER_AGENT = "bertrec-download"


class DownloadError(RuntimeError):
    """A download that failed or did not verify; nothing is left in the destination when it is raised."""


class UnsafeArchiveError(DownloadError):
    """An archive member would land outside the extraction folder (absolute path, ``..``, a link)."""


@dataclass(frozen=True)
class RemoteDataset:
    """One downloadable file and where it lands.

    ``target`` is the name created in the destination folder: a folder for a zip (its contents, without a single
    top-level folder), else the file itself. ``size``/``sha256``/``md5`` are checked when given. ``reader`` and
    ``read_path`` (relative to the destination folder) say how to read it: ``--dataset DEST/read_path --reader``.
    """

    name: str
    url: str
    target: str
    reader: str | None = None
    read_path: str | None = None
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    description: str = ""

    @property
    def is_zip(self) -> bool:
        return PurePosixPath(self.url.split("?", 1)[0]).suffix.lower() == ".zip"


def _movielens(name: str, md5: str | None, read: str, description: str) -> RemoteDataset:
    return RemoteDataset(
        name=name,
        url=f"https://files.grouplens.org/datasets/movielens/{name}.zip",
        target=name,
        reader="movielens",
        read_path=f"{name}/{read}",
        md5=md5,  # GroupLens publishes an .md5 next to each zip
        description=description,
    )


# Amazon categories offered by name; other categories work with the same URL patterns (docs/datasets.md).
AMAZON_2014_CATEGORIES = ("Beauty", "Books", "Electronics", "Movies_and_TV", "Sports_and_Outdoors", "Toys_and_Games")
AMAZON_2018_CATEGORIES = ("All_Beauty", "AMAZON_FASHION", "Books", "Electronics", "Movies_and_TV", "Video_Games")
AMAZON_2023_CATEGORIES = ("All_Beauty", "Books", "Electronics", "Movies_and_TV", "Video_Games")
_SNAP = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
_UCSD = "https://mcauleylab.ucsd.edu/public_datasets/data"


def _registry() -> dict[str, RemoteDataset]:
    entries = [
        _movielens("ml-100k", "0e33842e24a9c977be4e0107933c0723", "u.data", "MovieLens 100K ratings (1998)"),
        _movielens("ml-1m", "c4d9eecfca2ab87c1945afe126590906", "ratings.dat", "MovieLens 1M ratings (2003)"),
        _movielens("ml-10m", "ce571fd55effeba0271552578f2648bd", "ratings.dat", "MovieLens 10M ratings (2009)"),
        _movielens("ml-20m", "cd245b17a1ae2cc31bb14903e1204af3", "ratings.csv", "MovieLens 20M ratings (2016)"),
        _movielens("ml-25m", "6b51fb2759a8657d3bfcbfc42b592ada", "ratings.csv", "MovieLens 25M ratings (2019)"),
        _movielens("ml-32m", None, "ratings.csv", "MovieLens 32M ratings (2023)"),
        _movielens("ml-latest-small", None, "ratings.csv", "MovieLens latest, small (changes over time)"),
        _movielens("ml-latest", None, "ratings.csv", "MovieLens latest, full (changes over time)"),
        RemoteDataset(
            name="tmall-2014",
            url="https://raw.githubusercontent.com/yezhang/BuyingBehaviourPredict/"
            "e140496f30ef1ead5762468f058e5d3903745c15/data/t_alibaba_data.csv",
            target="t_alibaba_data.csv",
            reader="tmall",
            read_path="t_alibaba_data.csv",
            size=3_730_432,
            sha256="32ada3253a03c48643ec3bc219164ad5cad5ad70ebaa074098d5e16232f1aa3c",
            description="Tmall 2014 contest log (user x brand), as committed to GitHub in March 2014; research only",
        ),
    ]
    session_rec = "https://raw.githubusercontent.com/rn5l/session-rec/5dcd583cbd8d44703a5248b9a308945f24b91390"
    for part, size, sha256 in (
        ("train_full", 2_146_008, "9842c90358298ee784fcf0c9dccb2eeb283ab04368e53bdeee896747f4c03e1e"),
        ("test", 414_350, "380410c606403531019e1ec0b4d192ef90492d594b9b5a91633b860618dd7136"),
    ):
        filename = f"yoochoose-clicks-100k_{part}.txt"
        entries.append(
            RemoteDataset(
                name=f"yoochoose-100k-{part.replace('_', '-')}",
                url=f"{session_rec}/data/rsc15/prepared/{filename}",
                target=filename,
                reader="yoochoose",
                read_path=filename,
                size=size,
                sha256=sha256,
                description=f"YooChoose clicks, session-rec's 100k sample ({part} part); research only",
            )
        )
    for category in AMAZON_2014_CATEGORIES:
        for kind, filename in (
            ("ratings", f"ratings_{category}.csv"),
            ("reviews-5core", f"reviews_{category}_5.json.gz"),
        ):
            entries.append(
                RemoteDataset(
                    name=f"amazon2014-{kind}-{category}",
                    url=f"{_SNAP}/{filename}",
                    target=filename,
                    reader="amazon",
                    read_path=filename,
                    description=f"Amazon 2014 {category}: {kind.replace('-', ' ')}",
                )
            )
    for category in AMAZON_2018_CATEGORIES:
        entries.append(
            RemoteDataset(
                name=f"amazon2018-ratings-{category}",
                url=f"{_UCSD}/amazon_v2/categoryFilesSmall/{category}.csv",
                target=f"{category}.csv",
                reader="amazon",
                read_path=f"{category}.csv",
                description=f"Amazon 2018 {category}: ratings only (item,user,rating,timestamp)",
            )
        )
    for category in AMAZON_2023_CATEGORIES:
        entries.append(
            RemoteDataset(
                name=f"amazon2023-reviews-{category}",
                url=f"{_UCSD}/amazon_2023/raw/review_categories/{category}.jsonl.gz",
                target=f"{category}.jsonl.gz",
                reader="amazon",
                read_path=f"{category}.jsonl.gz",
                description=f"Amazon 2023 {category}: all reviews (JSON lines, times in ms)",
            )
        )
    return {entry.name: entry for entry in entries}


DATASETS: dict[str, RemoteDataset] = _registry()


def download(
    dataset: str | RemoteDataset,
    dest_dir: str | os.PathLike,
    *,
    force: bool = False,
    timeout: float = 60.0,
    max_extract_bytes: int = 64 << 30,
) -> Path:
    """Fetch ``dataset`` (a name in ``DATASETS`` or a ``RemoteDataset``) into ``dest_dir``; return the result's path.

    Idempotent: an existing result is returned without any network access (``force=True`` replaces it). A failed
    or unverified download raises ``DownloadError`` and leaves nothing behind but what was there before.
    ``max_extract_bytes`` bounds the unpacked size of a zip (a guard against zip bombs).
    """
    entry = _entry(dataset)
    dest = Path(dest_dir)
    final = dest / entry.target
    if final.exists() and not force:
        return final
    dest.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=dest, prefix=f".{entry.target}.", suffix=".part")
    os.close(handle)
    part = Path(name)
    staging: Path | None = None
    try:
        _fetch(entry, part, timeout)
        if entry.is_zip:
            staging = Path(tempfile.mkdtemp(dir=dest, prefix=f".{entry.target}.", suffix=".extract"))
            _safe_extract(part, staging, max_extract_bytes)
            _install(_strip_top_folder(staging), final, force)
        else:
            _install(part, final, force)
    finally:
        part.unlink(missing_ok=True)
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _entry(dataset: str | RemoteDataset) -> RemoteDataset:
    if isinstance(dataset, RemoteDataset):
        return dataset
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; see python -m bertrec.data.download --list")
    return DATASETS[dataset]


def _fetch(entry: RemoteDataset, part: Path, timeout: float) -> None:
    """Stream the URL into ``part``, hashing as it goes, then check size and checksums."""
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    request = urllib.request.Request(entry.url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, part.open("wb") as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                sha256.update(chunk)
                md5.update(chunk)
                size += len(chunk)
    except OSError as error:  # URLError, HTTPError, timeouts and disk errors are all OSErrors
        raise DownloadError(
            f"{entry.name}: downloading {entry.url} failed ({error}); check the network and retry"
        ) from error
    problems = []
    if entry.size is not None and size != entry.size:
        problems.append(f"size {size} bytes, expected {entry.size}")
    if entry.sha256 is not None and sha256.hexdigest() != entry.sha256.lower():
        problems.append(f"sha256 {sha256.hexdigest()}, expected {entry.sha256}")
    if entry.md5 is not None and md5.hexdigest() != entry.md5.lower():
        problems.append(f"md5 {md5.hexdigest()}, expected {entry.md5}")
    if problems:
        raise DownloadError(
            f"{entry.name}: {entry.url} did not verify ({'; '.join(problems)}): the download was corrupted or the "
            "file changed upstream. Nothing was kept; retry, and if it persists check the provider's page."
        )


def _safe_extract(archive_path: Path, into: Path, max_bytes: int) -> None:
    """Extract every member under ``into``, after checking all of them: one bad member extracts nothing."""
    root = into.resolve()
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = archive.infolist()
            total = 0
            for member in members:
                name = member.filename
                parts = PurePosixPath(name.replace("\\", "/")).parts
                if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise UnsafeArchiveError(
                        f"{archive_path.name}: member {name!r} would be written outside the folder"
                    )
                if stat.S_ISLNK(member.external_attr >> 16):
                    raise UnsafeArchiveError(f"{archive_path.name}: member {name!r} is a link; links are not extracted")
                if not (root / Path(*parts)).resolve().is_relative_to(root):
                    raise UnsafeArchiveError(f"{archive_path.name}: member {name!r} resolves outside the folder")
                total += member.file_size
            if total > max_bytes:
                raise DownloadError(f"{archive_path.name}: unpacks to {total} bytes, over the {max_bytes} limit")
            archive.extractall(into)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{archive_path.name}: not a valid zip file ({error}); retry the download") from error


def _strip_top_folder(folder: Path) -> Path:
    """The single top-level folder of an extracted archive (ml-1m.zip holds ml-1m/), else the folder itself."""
    children = list(folder.iterdir())
    return children[0] if len(children) == 1 and children[0].is_dir() else folder


def _install(source: Path, final: Path, force: bool) -> None:
    """Rename ``source`` to ``final`` atomically; with ``force`` the old result is moved aside first, then deleted."""
    old = None
    if final.exists() and force:
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    try:
        os.replace(source, final)
    except OSError:
        if final.exists() and old is None:  # another process finished the same download first: keep its result
            return
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None and old.is_dir():
        shutil.rmtree(old)
    elif old is not None:
        old.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download a public dataset for the bertrec recipes.")
    parser.add_argument("name", nargs="?", help="dataset name (see --list)")
    parser.add_argument("dest_dir", nargs="?", default="data", help="destination folder (default: data)")
    parser.add_argument("--force", action="store_true", help="download again even if present")
    parser.add_argument("--list", action="store_true", help="list the dataset names")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        for entry in DATASETS.values():
            print(f"{entry.name:40s} {entry.description}")
        return 0
    try:
        path = download(args.name, args.dest_dir, force=args.force)
    except (ValueError, DownloadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    entry = DATASETS[args.name]
    print(path)
    if entry.reader:
        print(
            f"use it with: --dataset {Path(args.dest_dir) / (entry.read_path or entry.target)} --reader {entry.reader}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
