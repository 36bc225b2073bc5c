from tests.e2e import axe
from tests.e2e.test_i18n_a11y import admin_user, make_context  # noqa
from tests.e2e.conftest import sign_in_with_cookie
import pytest
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

def test_debug(server, make_context, admin_user):
    context = make_context(bypass_csp=True)
    page = context.new_page()
    page.goto(server.http_url + "/accounts/login/")
    page.evaluate("""() => { const p = document.createElement('p'); p.textContent = 'low contrast'; p.style.color = '#ddd'; document.querySelector('main').append(p); const i = document.createElement('input'); document.querySelector('main').append(i); }""")
    print(axe.describe(axe.run(page)))
