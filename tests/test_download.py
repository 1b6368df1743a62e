"""Downloads against a loopback HTTP server started by each test: resume, checksum, no network."""

import hashlib
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from smallcnn import download
from smallcnn.errors import UserError
from smallcnn.fingerprint import check_downloaded_sha256

ARCHIVE = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA256 = hashlib.sha256(ARCHIVE).hexdigest()
KAGGLE_PATH = "/v1/competitions.CompetitionApiService/DownloadDataFile"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        server = self.server
        server.log.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path.split("?")[0])
        if body is None:
            self._send(404, b"not here")
            return
        start, status = 0, 200
        wanted = self.headers.get("Range")
        if wanted and server.ranges:
            start = int(wanted.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", '"v1"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        rest = body[start:]
        if server.drops > 0:
            # Half the bytes, then the connection goes away mid-file.
            server.drops -= 1
            self.wfile.write(rest[: len(rest) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(rest)

    def do_POST(self):
        server = self.server
        server.log.append((self.path, self.headers.get("Authorization")))
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != KAGGLE_PATH:
            self._send(404, b"{}")
        elif server.kaggle_status == 403:
            message = b"You must accept this competition's rules before downloading files."
            self._send(403, b'{"code": 403, "message": "' + message + b'"}', "application/json")
        else:
            self.send_response(302)
            self.send_header("Location", f"{server.url}/signed/train.zip?token=secret")
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _send(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.files = {"/data.zip": ARCHIVE, "/signed/train.zip": ARCHIVE}
    httpd.drops, httpd.ranges, httpd.kaggle_status, httpd.log = 0, True, 302, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setattr(download, "BACKOFF_SECONDS", 0.0)
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def fetch(tmp_path, url, sha256=None, source="url"):
    return download.fetch_dataset(
        source=source,
        url=url,
        sha256=sha256,
        competition="dogs-vs-cats",
        archive=tmp_path / "archive.zip",
        record=tmp_path / "archive.json",
    )


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_download_resumes_with_range_after_dropped_connections(tmp_path, server):
    server.drops = 2
    facts = fetch(tmp_path, f"{server.url}/data.zip", sha256=SHA256.upper())
    assert (tmp_path / "archive.zip").read_bytes() == ARCHIVE
    ranges = [header for _, header in server.log]
    assert ranges[0] is None
    assert ranges[1] == f"bytes={len(ARCHIVE) // 2}-"
    assert len(ranges) == 3 and ranges[2].startswith("bytes=")
    record = json.loads((tmp_path / "archive.json").read_text())
    assert record == facts
    assert (record["sha256"], record["bytes"]) == (SHA256, len(ARCHIVE))
    assert record["url"] == f"{server.url}/data.zip" and record["date"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archive.json", "archive.zip"]


def test_a_failed_download_leaves_only_a_part_file_that_the_next_run_resumes(
    tmp_path, server, monkeypatch
):
    monkeypatch.setattr(download, "RETRIES", 1)
    server.drops = 5
    with pytest.raises(UserError, match="failed 2 times") as error:
        fetch(tmp_path, f"{server.url}/data.zip")
    assert "Run again to resume" in str(error.value)
    assert not (tmp_path / "archive.zip").exists()
    kept = (tmp_path / "archive.zip.part").stat().st_size
    assert 0 < kept < len(ARCHIVE)

    server.drops, server.log = 0, []
    fetch(tmp_path, f"{server.url}/data.zip")
    assert (tmp_path / "archive.zip").read_bytes() == ARCHIVE
    assert server.log == [("/data.zip", f"bytes={kept}-")]


def test_a_server_without_ranges_is_downloaded_again_from_the_start(tmp_path, server):
    server.drops, server.ranges = 1, False
    fetch(tmp_path, f"{server.url}/data.zip")
    assert (tmp_path / "archive.zip").read_bytes() == ARCHIVE


def test_checksum_mismatch_stops_and_nothing_looks_complete(tmp_path, server):
    with pytest.raises(UserError) as error:
        fetch(tmp_path, f"{server.url}/data.zip", sha256="0" * 64)
    message = str(error.value)
    assert SHA256 in message and "0" * 64 in message and "\n" not in message
    assert not (tmp_path / "archive.zip").exists()
    assert not (tmp_path / "archive.json").exists()


@pytest.mark.parametrize("host", ["127.0.0.1", "nothing.invalid"])
def test_no_network_is_one_line_naming_the_host_and_source_local(tmp_path, host):
    port = closed_port() if host == "127.0.0.1" else 80
    with pytest.raises(UserError) as error:
        fetch(tmp_path, f"http://{host}:{port}/data.zip")
    message = str(error.value)
    assert f"cannot reach {host}" in message
    assert "data.source: local" in message
    assert "\n" not in message and len(message) < 400


def test_an_http_error_is_a_user_error(tmp_path, server):
    with pytest.raises(UserError, match="answered 404"):
        fetch(tmp_path, f"{server.url}/missing.zip")


def test_microsoft_source_downloads_the_petimages_address(tmp_path, server, monkeypatch):
    assert download.MICROSOFT_URL.endswith("/kagglecatsanddogs_5340.zip")
    monkeypatch.setattr(download, "MICROSOFT_URL", f"{server.url}/data.zip")
    fetch(tmp_path, None, source="microsoft")
    assert (tmp_path / "archive.zip").read_bytes() == ARCHIVE


def test_file_url_is_copied(tmp_path):
    original = tmp_path / "original.zip"
    original.write_bytes(ARCHIVE)
    fetch(tmp_path, original.as_uri(), sha256=SHA256)
    assert (tmp_path / "archive.zip").read_bytes() == ARCHIVE


@pytest.fixture
def kaggle(tmp_path, monkeypatch, server):
    """The kaggle package talking to the loopback server, with no credentials of this machine."""
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_API_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    from kaggle.api.kaggle_api_extended import KaggleApi
    from kagglesdk import kaggle_env

    monkeypatch.setattr(KaggleApi, "config", str(home / ".kaggle" / "kaggle.json"))
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.PROD, server.url)
    return server


def test_kaggle_without_credentials_says_how_to_get_them(tmp_path, kaggle):
    with pytest.raises(UserError, match="no Kaggle credentials.*kaggle.json"):
        fetch(tmp_path, None, source="kaggle")
    assert kaggle.log == []


def test_kaggle_rules_not_accepted(tmp_path, kaggle, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    kaggle.kaggle_status = 403
    with pytest.raises(UserError) as error:
        fetch(tmp_path, None, source="kaggle")
    assert "accept the competition's rules" in str(error.value)
    assert "kaggle.com/competitions/dogs-vs-cats/rules" in str(error.value)


def test_kaggle_download_follows_the_signed_address(tmp_path, kaggle, monkeypatch, caplog):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")
    with caplog.at_level("INFO"):  # what a job log records
        facts = fetch(tmp_path, None, source="kaggle")
    assert (tmp_path / "archive.zip").read_bytes() == ARCHIVE
    assert kaggle.log[0][0] == KAGGLE_PATH and kaggle.log[0][1].startswith("Basic ")
    # Neither the signed address's query nor the Kaggle key is recorded or logged.
    assert facts["url"] == f"{kaggle.url}/signed/train.zip?***"
    shown = (tmp_path / "archive.json").read_text() + caplog.text
    assert "secret" not in shown and "0123456789abcdef" not in shown


def test_credentials_in_the_url_are_neither_recorded_nor_logged(tmp_path, server, caplog):
    host = server.url.removeprefix("http://")
    url = f"http://user:secret@{host}/data.zip?token=secret"
    with caplog.at_level("INFO"):  # what a job log records (smallcnn.logs.job_log)
        fetch(tmp_path, url)
    assert (tmp_path / "archive.zip").read_bytes() == ARCHIVE
    record = (tmp_path / "archive.json").read_text()
    assert json.loads(record)["url"] == f"http://***@{host}/data.zip?***"
    assert "secret" not in record and "secret" not in caplog.text
    assert "data.zip" in caplog.text

    with pytest.raises(UserError) as error:
        fetch(tmp_path, f"http://user:secret@{host}/missing.zip?token=secret")
    assert "secret" not in str(error.value) and "missing.zip" in str(error.value)


def test_a_pinned_sum_is_checked_against_the_archive_already_downloaded(tmp_path, server):
    fetch(tmp_path, f"{server.url}/data.zip")
    archive, record = tmp_path / "archive.zip", tmp_path / "archive.json"
    assert check_downloaded_sha256(archive, record, None) is None
    assert check_downloaded_sha256(archive, record, SHA256.upper()) == SHA256
    with pytest.raises(UserError) as error:
        check_downloaded_sha256(archive, record, "0" * 64)
    assert SHA256 in str(error.value) and "0" * 64 in str(error.value)

    # Replaced after the download recorded its sum: the archive itself is hashed.
    archive.write_bytes(b"another archive")
    with pytest.raises(UserError, match=hashlib.sha256(b"another archive").hexdigest()):
        check_downloaded_sha256(archive, record, SHA256)
