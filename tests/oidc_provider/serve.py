"""Run the test identity provider: `python -m tests.oidc_provider.serve` with

- IDP_PORT: the port to listen on (127.0.0.1);
- IDP_DATABASE: a SQLite file of its own, made afresh;
- IDP_CLIENT: JSON {"client_id", "client_secret", "redirect_uri"} of the chat under test;
- IDP_USERS: JSON [{"username", "password", "email", "first_name", "groups": [...]}, ...].

It migrates, makes its signing key, registers the client (code flow, RS256, no consent
screen) and the people, then serves on Django's development server.
"""

from __future__ import annotations

import json
import os


def main() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from oidc_provider.models import Client, ResponseType

    call_command("migrate", verbosity=0)
    call_command("creatersakey", verbosity=0)
    registration = json.loads(os.environ["IDP_CLIENT"])
    client = Client.objects.create(
        name="chat under test",
        client_type="confidential",
        client_id=registration["client_id"],
        client_secret=registration["client_secret"],
        _redirect_uris=registration["redirect_uri"],
        jwt_alg="RS256",
        require_consent=False,
        reuse_consent=True,
    )
    client.response_types.add(ResponseType.objects.get(value="code"))
    for person in json.loads(os.environ.get("IDP_USERS", "[]")):
        user = User.objects.create_user(
            person["username"],
            email=person.get("email", ""),
            password=person["password"],
            first_name=person.get("first_name", ""),
        )
        for name in person.get("groups", []):
            user.groups.add(Group.objects.get_or_create(name=name)[0])
    call_command(
        "runserver", f"127.0.0.1:{os.environ['IDP_PORT']}", use_reloader=False, verbosity=0
    )


if __name__ == "__main__":
    main()
