"""Alembic migrations (installed as package ``registry_migrations``)."""
