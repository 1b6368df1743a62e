"""Fetching the dataset archive: resumable, verified, atomic.

The archive is written to `<archive>.part` and renamed into place only when complete and, if a
checksum was given, verified: a killed or failed download never leaves a file that looks
complete. A dropped connection is resumed with an HTTP Range request (in this run, a bounded
number of times, and in the next run from the .part file left behind).
"""

import contextlib
import datetime
import io
import json
import logging
import os
import re
import sys
import time
import urllib.parse
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from smallcnn.atomic import replace_durably
from smallcnn.errors import UserError
from smallcnn.fingerprint import file_sha256
from smallcnn.redact import redact, redact_url

log = logging.getLogger(__name__)

MICROSOFT_URL = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
    "kagglecatsanddogs_5340.zip"
)
KAGGLE_FILE = "train.zip"
# Attempts after a dropped connection within one run, and the pause before each (x attempt).
RETRIES = 5
BACKOFF_SECONDS = 2.0
TIMEOUT_SECONDS = (15, 60)  # connect, read
CHUNK_BYTES = 1 << 20
OFFLINE_HINT = (
    "without network, copy the archive to this machine and set data.source: local and "
    "data.path: <the .zip> (or run the offline demo: --configfile config/demo.yaml)"
)


def fetch_dataset(source, url, sha256, competition, archive, record):
    """Download the archive of `source` (microsoft, kaggle or url) to `archive`.

    `record` gets a JSON file with the url (credentials redacted), sha256, size and date of what
    was downloaded. Nothing logged or recorded shows the url's userinfo or query, nor anything
    of the Kaggle credentials (sent by the kaggle package in a header, never to us).
    """
    if source == "microsoft":
        url = MICROSOFT_URL
    elif source == "kaggle":
        url = kaggle_download_url(competition, KAGGLE_FILE)
    elif source != "url":
        raise UserError(f"data.source {source!r} is not downloaded (microsoft, kaggle or url)")
    elif not url:
        raise UserError("data.source: url needs data.url, the address of a .zip of images")
    archive = Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    part = archive.with_name(archive.name + ".part")
    download(url, part)
    seen = file_sha256(part)
    if sha256 and seen.lower() != sha256.lower():
        raise UserError(
            f"the sha256 of {redact_url(url)} is {seen}, not data.sha256={sha256}; it is kept as "
            f"{part}. If the archive changed upstream, update data.sha256; if the download is "
            "damaged, delete that file and run again"
        )
    # Durable: the recorded sum is trusted while the archive keeps its size and date.
    replace_durably(part, archive)
    facts = {
        "source": source,
        "url": redact_url(url),
        "sha256": seen,
        "bytes": archive.stat().st_size,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    Path(record).write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    log.info("downloaded %s: %s bytes, sha256 %s", facts["url"], f"{facts['bytes']:,}", seen)
    return facts


def download(url, part, retries=None, backoff=None):
    """Fetch `url` into the file `part`, resuming what an earlier attempt left there."""
    retries = RETRIES if retries is None else retries
    backoff = BACKOFF_SECONDS if backoff is None else backoff
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        _copy_local(urllib.parse.unquote(urllib.parse.urlsplit(url).path), part)
        return
    if scheme not in ("http", "https"):
        raise UserError(
            f"cannot download {redact_url(url)!r}: only http, https and file addresses work"
        )
    host = urllib.parse.urlsplit(url).hostname
    validator = _resumable(part, url)
    connected = False
    failure = None
    with requests.Session() as session:
        for attempt in range(retries + 1):
            if attempt:
                log.warning("%s; resuming (attempt %d of %d)", failure, attempt, retries)
                time.sleep(backoff * attempt)
            offset = part.stat().st_size if part.exists() else 0
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
                if validator:
                    # The server sends the whole file instead if it changed since.
                    headers["If-Range"] = validator
            try:
                response = session.get(url, headers=headers, stream=True, timeout=TIMEOUT_SECONDS)
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema):
                raise UserError(
                    f"cannot download {redact_url(url)}: it is not a valid address (a port "
                    "above 65535, a bad host?); correct data.url"
                ) from None
            except requests.ConnectionError as error:
                if not connected:
                    raise UserError(
                        f"cannot reach {host} ({_reason(error)}); {OFFLINE_HINT}"
                    ) from None
                failure = f"connection to {host} failed ({_reason(error)})"
                continue
            connected = True
            with response:
                if response.status_code == 416 and offset:
                    if _total_of(response) == offset:
                        return  # the .part was already complete
                    part.unlink()
                    failure = f"{host} refused to resume; starting again"
                    continue
                if response.status_code not in (200, 206):
                    raise UserError(
                        f"{host} answered {response.status_code} {response.reason} for "
                        f"{redact_url(url)}; check the address (data.url) or try again later"
                    )
                if response.status_code == 206 and _start_of(response) != offset:
                    part.unlink()
                    failure = f"{host} sent another range than asked; starting again"
                    continue
                # 200: the server ignored the range, or the file changed since: start over.
                start = offset if response.status_code == 206 else 0
                validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
                _save_resume_validator(part, url, validator)
                total = _total_of(response)
                try:
                    _receive(response, part, start, total, host)
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as error:
                    failure = f"the connection to {host} dropped ({_reason(error)})"
                    continue
                size = part.stat().st_size
                if total is not None and size < total:
                    failure = f"{host} sent {size:,} of {total:,} bytes"
                    continue
                _forget_resume_validator(part)
                return
    raise UserError(
        f"downloading {redact_url(url)} failed {retries + 1} times, last: {failure}. Run again to "
        f"resume from the {part.stat().st_size if part.exists() else 0:,} bytes kept in {part}"
    )


def kaggle_download_url(competition, file_name):
    """The signed address of a competition file, asked of the Kaggle API with the user's
    credentials (~/.kaggle/kaggle.json, KAGGLE_USERNAME / KAGGLE_KEY or KAGGLE_API_TOKEN)."""
    rules = f"https://www.kaggle.com/competitions/{competition}/rules"
    try:
        # Importing kaggle tries to authenticate and prints advice when it cannot: keep quiet.
        with _quiet():
            from kaggle.api.kaggle_api_extended import KaggleApi
            from kagglesdk.competitions.types.competition_api_service import (
                ApiDownloadDataFileRequest,
            )
    except ImportError:
        raise UserError(
            "data.source: kaggle needs the kaggle package (pip install kaggle)"
        ) from None
    api = KaggleApi()
    try:
        with _quiet():
            api.authenticate()
    except SystemExit:
        raise UserError(
            "no Kaggle credentials: create an API token on kaggle.com (Settings > API) and put "
            "kaggle.json in ~/.kaggle/ (or set KAGGLE_USERNAME and KAGGLE_KEY), or download "
            f"{file_name} yourself and use data.source: local"
        ) from None
    except requests.ConnectionError as error:
        raise UserError(f"cannot reach Kaggle ({_reason(error)}); {OFFLINE_HINT}") from None
    request = ApiDownloadDataFileRequest()
    request.competition_name = competition
    request.file_name = file_name
    try:
        with api.build_kaggle_client() as client:
            response = client.competitions.competition_api_client.download_data_file(request)
            response.close()
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status == 403:
            raise UserError(
                f"Kaggle refused {competition}/{file_name} (403): accept the competition's rules "
                f"at {rules} with the account of your credentials, then run again"
            ) from None
        if status == 401:
            raise UserError(
                "Kaggle rejected the credentials (401): create a new API token on kaggle.com "
                "(Settings > API) and replace ~/.kaggle/kaggle.json"
            ) from None
        if status == 404:
            raise UserError(
                f"Kaggle has no file {file_name} in competition {competition!r} (404); check "
                "data.kaggle_competition"
            ) from None
        # requests names the address it asked for; it may be a signed one.
        raise UserError(f"Kaggle answered {status}: {redact(str(error))}") from None
    except requests.ConnectionError as error:
        host = urllib.parse.urlsplit(error.request.url).hostname if error.request else "Kaggle"
        raise UserError(f"cannot reach {host} ({_reason(error)}); {OFFLINE_HINT}") from None
    return response.url


def _receive(response, part, start, total, host):
    with open(part, "r+b" if start else "wb") as handle, _progress(total, start, host) as bar:
        handle.seek(start)
        handle.truncate()
        for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
            handle.write(chunk)
            bar.update(len(chunk))
        handle.flush()
        os.fsync(handle.fileno())


def _progress(total, start, host):
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        initial=start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=host,
        file=sys.stderr,
        # In a job log, a line every half minute rather than a redraw every tenth of a second.
        mininterval=0.1 if interactive else 30,
        ascii=not interactive,
    )


def _copy_local(path, part):
    source = Path(path)
    if not source.is_file():
        raise UserError(f"{source} (from data.url) is not a file")
    size = source.stat().st_size
    with (
        open(source, "rb") as reader,
        open(part, "wb") as writer,
        _progress(size, 0, "copy") as bar,
    ):
        for block in iter(lambda: reader.read(CHUNK_BYTES), b""):
            writer.write(block)
            bar.update(len(block))


def _start_of(response):
    """First byte of a 206 answer, from its Content-Range (bytes start-end/total)."""
    content_range = response.headers.get("Content-Range", "")
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1


def _total_of(response):
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() and response.status_code == 200 else None


def _validator_file(part):
    return part.with_name(part.name + ".json")


def _resumable(part, url):
    """The ETag or Last-Modified the .part file was downloaded under. A .part of another
    address, or one we know nothing about, is deleted: it cannot be resumed."""
    if not part.exists():
        return None
    try:
        saved = json.loads(_validator_file(part).read_text())
    except (OSError, ValueError):
        saved = {}
    if saved.get("url") != redact_url(url):
        part.unlink()
        return None
    return saved.get("validator")


def _save_resume_validator(part, url, validator):
    # Redacted: Kaggle signs a new address for each run, of the same file (and the signature is
    # a credential).
    _validator_file(part).write_text(json.dumps({"url": redact_url(url), "validator": validator}))


def _forget_resume_validator(part):
    _validator_file(part).unlink(missing_ok=True)


def _reason(error):
    """The cause of a requests error in a few words ("Connection refused")."""
    cause = error.args[0] if error.args else error
    cause = getattr(cause, "reason", cause)  # urllib3's MaxRetryError wraps the cause
    text = redact(str(cause))
    match = re.search(r"\[Errno -?\d+\] ([^)\]'\"]+)", text)
    if match:
        return match.group(1).strip()
    return text.rsplit(": ", 1)[-1].strip(" ()'\"") or type(cause).__name__


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
