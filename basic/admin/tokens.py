"""API tokens in the admin (imported by basic/admin/__init__.py): who has which (by key prefix and
name), when made and last used, and revoking them. Keys are never stored, so never shown; the admin
neither creates tokens (a key must be shown once, to its owner: sign in at `POST /api/auth/token/`)
nor edits them. DRF's own token admin, which listed plain keys, is removed."""
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework.authtoken.models import TokenProxy

from basic.models import ApiToken

if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "name", "user", "created", "last_used"]
    list_filter = [("user", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["user"]
    search_fields = ["user__username", "name", "prefix"]
    fields = ["user", "name", "prefix", "created", "last_used"]
    readonly_fields = fields
    date_hierarchy = "created"
    actions = ["revoke_tokens"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # viewing stays possible (view permission); only revoking changes anything

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "revoke" says what deleting a token means
        return actions

    @admin.action(description="Revoke selected API tokens", permissions=["delete"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Their keys stop working at the next request or socket."""
        count, _ = queryset.delete()
        self.message_user(request, f"Revoked {count} API token(s).", messages.SUCCESS)
