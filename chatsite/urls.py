from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog, set_language

urlpatterns = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True,
            # The "Sign in with …" button, when single sign-on is configured.
            extra_context={
                "sso_name": settings.OIDC_PROVIDER_NAME if settings.OIDC_ENABLED else ""
            },
        ),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The language switch (a POST form in the sidebar and on the login page): sets a cookie.
    path("i18n/setlang/", set_language, name="set_language"),
    # The translations of static/js (locale/*/djangojs.po), loaded by a plain <script src>
    # before the modules. Only this project's catalog: the admin loads its own.
    path(
        "jsi18n/",
        JavaScriptCatalog.as_view(packages=["conversations"]),
        name="javascript-catalog",
    ),
    path("admin/", admin.site.urls),
    path("", include("conversations.urls")),
]

if settings.OIDC_ENABLED:
    # /oidc/authenticate/ starts the provider's sign-in, /oidc/callback/ ends it.
    urlpatterns.insert(0, path("oidc/", include("mozilla_django_oidc.urls")))
