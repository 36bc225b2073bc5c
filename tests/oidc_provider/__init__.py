"""A small OpenID Connect provider (django-oidc-provider) that the single sign-on tests run
as a real process: `python -m tests.oidc_provider.serve` (see its docstring)."""
