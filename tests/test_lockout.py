"""Login throttling (django-axes): five wrong passwords lock a username on one address out,
the right one included, until the cool-off ends; the page says when."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.test import AsyncClient, Client
from django.utils import timezone

from tests.conftest import make_user

pytestmark = pytest.mark.django_db

WRONG = "not-the-password"


@pytest.fixture(autouse=True)
def _fast(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice() -> Any:
    return make_user("alice")  # password "pw-alice"


def sign_in(client: Client, password: str, username: str = "alice", url: str = "/accounts/login/"):
    return client.post(url, {"username": username, "password": password})


def fail(client: Client, times: int, username: str = "alice") -> Any:
    """`times` wrong passwords: the form again with its error, until the fifth locks."""
    for attempt in range(1, times + 1):
        response = sign_in(client, WRONG, username)
        assert response.status_code == (429 if attempt == 5 else 200), attempt
    return response


def test_five_wrong_passwords_lock_out_even_the_right_one(alice: Any) -> None:
    client = Client()
    assert "Too many sign-in attempts" in fail(client, 5).content.decode()
    response = sign_in(client, "pw-alice")
    assert response.status_code == 429
    assert SESSION_KEY not in client.session
    page = response.content.decode()
    assert "Too many sign-in attempts" in page
    assert re.search(r"Try again in 1[45] minutes, after \d\d:\d\d UTC", page), page
    assert 14 * 60 <= int(response["Retry-After"]) <= 15 * 60
    # Trying again during the lockout does not push its end further away.
    until = re.search(r"after (\d\d:\d\d) UTC", page).group(1)
    again = sign_in(client, "pw-alice").content.decode()
    assert re.search(r"after (\d\d:\d\d) UTC", again).group(1) == until


def test_after_the_cool_off_the_right_password_works_again(alice: Any) -> None:
    client = Client()
    fail(client, 5)
    assert sign_in(client, "pw-alice").status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    response = sign_in(client, "pw-alice")
    assert response.status_code == 302 and client.session[SESSION_KEY] == str(alice.pk)


def test_a_success_clears_the_count(alice: Any) -> None:
    client = Client()
    fail(client, 4)
    assert sign_in(client, "pw-alice").status_code == 302
    client.logout()
    fail(client, 4)
    assert sign_in(client, "pw-alice").status_code == 302


def test_the_lockout_is_per_username_and_address(alice: Any) -> None:
    make_user("bob")
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    fail(attacker, 5)
    assert sign_in(attacker, "pw-alice").status_code == 429
    # Alice at home is not locked out by a stranger's guesses ...
    home = Client(REMOTE_ADDR="198.51.100.7")
    assert sign_in(home, "pw-alice").status_code == 302
    # ... and the attacker's address still reaches other accounts' forms.
    assert sign_in(attacker, "pw-bob", username="bob").status_code == 302


def test_the_admin_sign_in_is_throttled_too() -> None:
    make_user("root", is_staff=True, is_superuser=True)
    client = Client()
    failures = [sign_in(client, WRONG, "root", url="/admin/login/") for _ in range(5)]
    assert [r.status_code for r in failures] == [200, 200, 200, 200, 429]
    assert sign_in(client, "pw-root", "root", url="/admin/login/").status_code == 429


@pytest.mark.django_db(transaction=True)
async def test_the_lockout_page_is_served_by_the_asynchronous_stack_too(alice: Any) -> None:
    # Daphne runs the middleware asynchronously, where axes calls the page differently.
    client = AsyncClient()
    for attempt in range(1, 6):
        response = await client.post("/accounts/login/", {"username": "alice", "password": WRONG})
        assert response.status_code == (429 if attempt == 5 else 200)
    response = await client.post("/accounts/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 429
    assert "Try again in" in response.content.decode()


def test_the_typed_passwords_are_not_kept(alice: Any) -> None:
    client = Client()
    sign_in(client, "hunter2-typed-by-mistake")
    attempt = AccessAttempt.objects.get()
    assert "hunter2-typed-by-mistake" not in attempt.post_data


def test_client_login_and_force_login_still_work_in_tests(alice: Any) -> None:
    # Axes needs the request; Client.login does not pass one unless told to.
    client = Client()
    assert client.login(request=HttpRequest(), username="alice", password="pw-alice")
    assert client.get("/").status_code == 200
    forced = Client()
    forced.force_login(alice)
    assert forced.get("/").status_code == 200


@pytest.mark.parametrize("password", ["password", "12345678", "alice-pw", "short"])
def test_weak_passwords_are_refused(alice: Any, password: str) -> None:
    with pytest.raises(ValidationError):
        validate_password(password, user=alice)
