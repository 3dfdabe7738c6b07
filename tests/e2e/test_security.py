"""Nobody but the owner is let in, nobody reads another's memories, and the token stays secret."""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import httpx
import pytest

from echo.brain.users import user_key
from tests.e2e.harness import CAT_FACT, GUEST_FACT, Echo

pytestmark = pytest.mark.e2e


def near_misses(token: str) -> dict[str, dict]:
    """Authorization headers that are not the owner's. (Spaces around the whole header value
    are not part of it in HTTP, so clients and servers drop them: that is the same token.)"""
    return {
        "none": {},
        "empty": {"Authorization": ""},
        "scheme only": {"Authorization": "Bearer"},
        "wrong": {"Authorization": "Bearer not-the-owner"},
        "last character": {"Authorization": f"Bearer {token[:-1]}{'x' if token[-1] != 'x' else 'y'}"},
        "one short": {"Authorization": f"Bearer {token[:-1]}"},
        "one more": {"Authorization": f"Bearer {token}0"},
        "two spaces": {"Authorization": f"Bearer  {token}"},
        "a tab": {"Authorization": f"Bearer\t{token}"},
        "space inside": {"Authorization": f"Bearer {token[:4]} {token[4:]}"},
        "token and more": {"Authorization": f"Bearer {token} x"},
        "basic": {"Authorization": f"Basic {token}"},
        "no scheme": {"Authorization": token},
    }


def test_no_near_miss_of_the_token_runs_a_command_or_reads_the_memory(echo: Echo):
    projects = echo.home / "origin" / "projects"
    for name, headers in near_misses(echo.token).items():
        made = httpx.post(f"{echo.url}/api/ask", json={"prompt": "make me a todo app in python"}, headers=headers, timeout=60)
        assert made.status_code == 403 and made.json()["error"]["code"] == "origin_only", name
        for path, params in (("/api/memory/search", {"q": "고양이"}), ("/api/insights", {})):
            response = httpx.get(f"{echo.url}{path}", params=params, headers=headers, timeout=30)
            assert response.status_code in (401, 403) and "모카" not in response.text, (name, path)
        as_origin = httpx.post(f"{echo.url}/api/ask", json={"prompt": "안녕", "user": "origin"}, headers=headers, timeout=60)
        assert as_origin.status_code == 403 and as_origin.json()["error"]["code"] == "reserved_user", name
    assert not projects.exists()


@pytest.mark.parametrize(
    "user, key_of, question, foreign",
    [
        ("stranger", "stranger", "내 고양이 이름이 뭐였지?", CAT_FACT[1]),  # keyed, but the cat is the owner's
        ("minji", "minji", "고양이 입양한 얘기 기억나?", CAT_FACT[1]),
        ("stranger", "stranger", "서핑 배우는 거 어때?", GUEST_FACT[1]),  # surfing is minji's
    ],
)
def test_a_users_recall_never_brings_another_users_memories(echo: Echo, user, key_of, question, foreign):
    body = echo.ask({"prompt": question, "user": user}, token=user_key(echo.token, key_of)).json()
    assert all(m["user"] == user for m in body["memories"]), body["memories"]
    assert foreign not in str(body["memories"]) and foreign[:12] not in str(body["circuits"])


@pytest.mark.parametrize("authorization", [None, "stranger"])
def test_claiming_a_users_name_without_their_key_is_refused_and_nothing_is_saved(echo: Echo, authorization):
    headers = {"Authorization": f"Bearer {user_key(echo.token, authorization)}"} if authorization else {}
    before = sorted((echo.home / "memory").glob("day*/minji/part*.txt"))
    sizes = [p.stat().st_size for p in before]
    refused = httpx.post(f"{echo.url}/api/ask", json={"prompt": "서핑 배우는 곳이 어디였지?", "user": "minji"}, headers=headers, timeout=60)
    assert refused.status_code == 401 and GUEST_FACT[1] not in refused.text
    assert sorted((echo.home / "memory").glob("day*/minji/part*.txt")) == before and [p.stat().st_size for p in before] == sizes


def test_echo_listens_on_127_0_0_1_only(echo: Echo):
    port = echo.url.rsplit(":", 1)[1]
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout.split()
    addresses = {field.rsplit(":", 1)[0] for field in listening if field.endswith(f":{port}")}
    assert addresses == {"127.0.0.1"}, listening


def files_holding(root: Path, secret: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and secret in path.read_bytes():
                found.append(str(path))
        except OSError:
            pass  # sockets, vanished temporary files
    return found


def test_the_token_is_in_no_log_file_memory_or_package(echo: Echo, tmp_path):
    import ray

    from echo_cli import main as cli

    secret = echo.token.encode()
    reply = echo.ask({"prompt": "내 토큰을 기억하니?"}, token=echo.token)  # the owner, speaking with the token
    assert reply.status_code == 200 and secret not in reply.content and echo.token not in str(reply.headers)
    health = httpx.get(f"{echo.url}/health", headers={"Authorization": f"Bearer {echo.token}"}, timeout=30)
    assert secret not in health.content
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    assert files_holding(session / "logs", secret) == []  # every Ray, Serve and Echo log of this session
    assert files_holding(echo.home, secret) == []  # memory, backup, index, projects, config

    from click.testing import CliRunner

    out = tmp_path / "echo.zip"
    result = CliRunner(env={"ECHO_ORIGIN_TOKEN": echo.token}).invoke(cli, ["package", "--out", str(out)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as packed:
        assert [n for n in packed.namelist() if secret in packed.read(n)] == []
