"""The local mirror's HTTP semantics: ranges, HEAD, 404s, throttling."""

from __future__ import annotations

import time

import pytest
import requests

from delf_core.gldv2.mirror import MirrorServer


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    data = bytes(range(256)) * 40
    (root / "train").mkdir()
    (root / "train" / "images_000.tar").write_bytes(data)
    (root / "secret.txt").write_text("top")
    with MirrorServer(root / "train") as server:
        yield server.url, data


@pytest.mark.parametrize(
    "header, status, span",
    [
        (None, 200, (0, 10240)),
        ("bytes=0-9", 206, (0, 10)),
        ("bytes=100-", 206, (100, 10240)),
        ("bytes=-16", 206, (10224, 10240)),
        ("bytes=10000-99999", 206, (10000, 10240)),
    ],
)
def test_ranges(served, header, status, span):
    url, data = served
    headers = {"Range": header} if header else {}
    response = requests.get(f"{url}/images_000.tar", headers=headers, timeout=5)
    assert response.status_code == status
    assert response.content == data[span[0] : span[1]]
    assert response.headers["Accept-Ranges"] == "bytes"
    if status == 206:
        assert response.headers["Content-Range"] == f"bytes {span[0]}-{span[1] - 1}/{len(data)}"


@pytest.mark.parametrize("header", ["bytes=10240-", "bytes=5-2", "items=0-1", "bytes=-"])
def test_unsatisfiable_range_is_416_with_the_size(served, header):
    url, data = served
    response = requests.get(f"{url}/images_000.tar", headers={"Range": header}, timeout=5)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"


def test_head_gives_the_length_without_a_body(served):
    url, data = served
    response = requests.head(f"{url}/images_000.tar", timeout=5)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(data)


@pytest.mark.parametrize("path", ["/nope.tar", "/../secret.txt", "/%2e%2e/secret.txt", "/"])
def test_missing_or_outside_paths_are_404(served, path):
    url, _ = served
    assert requests.get(url + path, timeout=5).status_code == 404


def test_rate_limit_holds_per_connection(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"\0" * 1_000_000)
    with MirrorServer(tmp_path, rate_limit_mb=4.0) as server:
        began = time.perf_counter()
        body = requests.get(f"{server.url}/f.bin", timeout=10).content
        elapsed = time.perf_counter() - began
    assert len(body) == 1_000_000
    assert 0.2 <= elapsed < 2.0  # 1 MB at 4 MB/s is 0.25 s
