"""Which route a prompt takes, and who the origin is."""

import pytest

from echo.brain.intent import classify
from echo.brain.users import is_origin


@pytest.mark.parametrize(
    "prompt", ["너는 누구야?", "너 누구야", "넌 누구니", "Who are you?", "what are you", "너의 자아에 대해 말해줘", "tell me about yourself"]
)
def test_identity_questions(prompt):
    assert classify(prompt) == "identity"


@pytest.mark.parametrize("prompt", ["블로그를 만들어줘", "계산기 앱 만들어 주세요", "make me a todo app", "Build me a game", "create a project for notes"])
def test_requests_to_make_something(prompt):
    assert classify(prompt) == "create_project"


@pytest.mark.parametrize("prompt", ["오늘 날씨 어때?", "what did we talk about yesterday?", "I made a cake", "self-hosted servers are fun", "누구랑 갔어?"])
def test_everything_else_goes_to_the_circuits(prompt):
    assert classify(prompt) == "circuits"


def test_only_the_exact_token_is_the_origin():
    token = "s3cret-token"
    assert is_origin(f"Bearer {token}", token)
    assert is_origin(f"bearer {token}", token)
    for header in [None, "", token, f"Bearer {token[:-1]}X", f"Bearer {token} ", f"Bearer  {token}", f"Basic {token}", "Bearer "]:
        assert not is_origin(header, token), header
    assert not is_origin(f"Bearer {token}", None)
    assert not is_origin("Bearer ", "")
