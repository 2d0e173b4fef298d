"""Download PneumoniaMNIST (MedMNIST v2/v3) with checksum verification.

Uses the ``medmnist`` package when it is installed (its own URLs and MD5s);
otherwise fetches the published Zenodo files itself and checks their MD5. CI has
no internet, so the tests drive this code with ``file://`` URLs.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
from pathlib import Path

from xraybench.errors import DataError

ZENODO = "https://zenodo.org/records/10519652/files"
# name -> (file, md5) as published in medmnist's INFO table (v3.0).
PNEUMONIAMNIST = {
    28: ("pneumoniamnist.npz", "28209eda62fecd6e6a2d98b1501bb15f"),
    64: ("pneumoniamnist_64.npz", "8f4eceb4ccffa70c672198ea285246c6"),
    128: ("pneumoniamnist_128.npz", "05b46931834c231683c68f40c47b2971"),
    224: ("pneumoniamnist_224.npz", "d6a3c71de1b945ea11211b03746c1fe1"),
}


def md5sum(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def fetch(url: str, dest: Path, md5: str | None) -> Path:
    """Download ``url`` to ``dest`` atomically; refuse a file whose MD5 differs."""
    from xraybench.data.cache import replace_atomically

    def download(tmp: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise DataError(f"download of {url} failed ({exc}); check the network or download it by hand") from None
        if md5 and md5sum(tmp) != md5:
            raise DataError(f"{url} downloaded with a wrong MD5 (expected {md5}); try again, or report it")

    dest.parent.mkdir(parents=True, exist_ok=True)
    if not replace_atomically(dest, download):
        raise DataError(f"cannot write {dest}; check that its folder is writable")
    return dest


def download_pneumoniamnist(size: int = 28, dest_dir: Path | None = None, base_url: str = ZENODO) -> Path:
    if size not in PNEUMONIAMNIST:
        raise DataError(f"PneumoniaMNIST comes in sizes {sorted(PNEUMONIAMNIST)}, not {size}")
    from platformdirs import user_data_dir

    dest_dir = dest_dir or Path(user_data_dir("xraybench"))
    name, md5 = PNEUMONIAMNIST[size]
    dest = dest_dir / name
    if dest.is_file() and md5sum(dest) == md5:
        return dest
    if base_url == ZENODO:
        try:  # prefer medmnist's own metadata when it is installed
            import medmnist

            info = medmnist.INFO["pneumoniamnist"]
            url = info.get(f"url_{size}") if size != 28 else info["url"]
            md5 = info.get(f"MD5_{size}") if size != 28 else info["MD5"]
            if url:
                return fetch(url, dest, md5)
        except ImportError:
            pass
    return fetch(f"{base_url}/{name}?download=1" if base_url == ZENODO else f"{base_url}/{name}", dest, md5)
