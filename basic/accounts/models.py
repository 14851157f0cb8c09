"""API tokens, stored hashed (app label `basic`; re-exported from basic/models.py).

A key is shown once, when it is made; the database keeps only its SHA-256 digest and its first few
characters (`prefix`, so a user can tell tokens apart in a list). Keys are 32 random bytes, so a
plain SHA-256 cannot be brute-forced and a lookup stays one indexed query (no slow KDF needed).
"""
from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True, help_text='What it is for, e.g. "jobs CLI on laptop".')
    prefix = models.CharField(max_length=8, help_text="The key's first characters, to tell tokens apart.")
    digest = models.CharField(max_length=64, unique=True, editable=False, help_text="SHA-256 (hex) of the key.")
    created = models.DateTimeField(auto_now_add=True)
    # Written at most every tokens.LAST_USED_EVERY seconds, not on every request.
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… {self.name}".strip()
