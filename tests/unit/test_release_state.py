"""salt/_states/ksha.py's release_extracted (the Kubernetes release and etcd's archive) under Salt's
loader mock: what it returns never holds a mirror URL's credentials. Salt's own archive.extracted
is run in the functional suite with a refused mirror URL."""

import pytest

from tests.conftest import load_salt_module

states = load_salt_module("states")


@pytest.fixture
def configure_loader_modules():
    return {states: {"__opts__": {"test": False}, "__states__": {}}}


# (a string of a state return) -> the same with every URL's userinfo redacted
REDACTED = [
    ("https://u:s3cret@mirror.example/k.tar.gz", "https://<redacted>@mirror.example/k.tar.gz"),
    (
        "Unable to fetch http://user@10.0.0.1:8080/k.tar.gz: 404",
        "Unable to fetch http://<redacted>@10.0.0.1:8080/k.tar.gz: 404",
    ),
    (
        "https://dl.k8s.io/v1.30.8/kubernetes-server-linux-amd64.tar.gz",
        "https://dl.k8s.io/v1.30.8/kubernetes-server-linux-amd64.tar.gz",
    ),
    ("a@b c://no userinfo here", "a@b c://no userinfo here"),
    ("two: ftp://a:b@h/x and salt://c:d@e/y", "two: ftp://<redacted>@h/x and salt://<redacted>@e/y"),
]


@pytest.mark.parametrize("text, expected", REDACTED)
def test_urls_lose_their_credentials(text, expected):
    assert states._redacted(text) == expected


def test_the_release_extraction_never_returns_the_mirrors_credentials():
    url = "https://u:s3cret@mirror.example/kubernetes-server-linux-amd64.tar.gz"

    def extracted(**kwargs):  # a failed download: archive.extracted hands back file.cached's return
        return {
            "name": kwargs["source"],
            "result": False,
            "changes": {},
            "comment": f"Unable to manage file: HTTP 401 for {kwargs['source']}",
            "__run_num__": [kwargs["source"]],
        }

    states.__states__["archive.extracted"] = extracted
    ret = states.release_extracted("/opt/kubernetes-v1.30.8", url, "sha256=" + "0" * 64)
    assert "s3cret" not in repr(ret)
    assert ret["name"] == "/opt/kubernetes-v1.30.8" and ret["result"] is False
    assert (
        ret["comment"]
        == "Unable to manage file: HTTP 401 for https://<redacted>@mirror.example/kubernetes-server-linux-amd64.tar.gz"
    )


def test_archive_extracted_gets_the_other_arguments_as_given():
    given = {}

    def extracted(**kwargs):
        given.update(kwargs)
        return {"name": kwargs["name"], "result": True, "changes": {}, "comment": "extracted"}

    states.__states__["archive.extracted"] = extracted
    ret = states.release_extracted("/opt/etcd-v3.4.23", "https://h/e.tar.gz", "sha256=" + "1" * 64,
                                   options="--strip-components=1", enforce_toplevel=False)  # fmt: skip
    assert ret == {"name": "/opt/etcd-v3.4.23", "result": True, "changes": {}, "comment": "extracted"}
    assert given == {"name": "/opt/etcd-v3.4.23", "source": "https://h/e.tar.gz", "source_hash": "sha256=" + "1" * 64,
                     "user": "root", "options": "--strip-components=1", "enforce_toplevel": False,
                     "source_hash_update": True}  # fmt: skip


def test_the_tarball_s_file_list_is_read_only_when_a_binary_ksha_runs_is_missing(tmp_path):
    given = {}

    def extracted(**kwargs):
        given.clear()
        given.update(kwargs)
        return {"name": kwargs["name"], "result": True, "changes": {}, "comment": "extracted"}

    states.__states__["archive.extracted"] = extracted
    binaries = [tmp_path / "etcd", tmp_path / "etcdctl"]
    binaries[0].write_text("etcd")
    expect = [str(b) for b in binaries]
    states.release_extracted(str(tmp_path), "https://h/e.tar.gz", "sha256=" + "1" * 64, expect=expect)
    assert "skip_files_list_verify" not in given and given["source_hash_update"] is True  # etcdctl missing
    binaries[1].write_text("etcdctl")
    states.release_extracted(str(tmp_path), "https://h/e.tar.gz", "sha256=" + "1" * 64, expect=expect)
    assert given["skip_files_list_verify"] is True and "expect" not in given
    states.release_extracted(str(tmp_path), "https://h/e.tar.gz", "sha256=" + "1" * 64)
    assert "skip_files_list_verify" not in given  # nothing expected: the full check
