"""The shapes of API tokens in REST answers: never the key (except once, at creation) nor its digest."""
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer

from basic.accounts.models import ApiToken


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as listed: enough to recognise and revoke it, nothing to use it with."""

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created", "last_used"]
        read_only_fields = fields


class NewApiTokenSerializer(ApiTokenSerializer):
    """A token just made: the only answer that carries its key."""

    token = serializers.SerializerMethodField(help_text="The key: send it as `Authorization: Token <key>`. "
                                                        "Shown only now; it cannot be retrieved again.")

    class Meta(ApiTokenSerializer.Meta):
        fields = ["token", *ApiTokenSerializer.Meta.fields]
        read_only_fields = fields

    def get_token(self, token: ApiToken) -> str:
        """The key, which only its creator has (pass it as context["key"]); never stored."""
        return self.context["key"]


class SignInSerializer(AuthTokenSerializer):
    """DRF's username and password check, plus an optional name for the new token."""

    token = None  # the answer is NewApiTokenSerializer
    name = serializers.CharField(required=False, allow_blank=True, max_length=100, default="",
                                 help_text='What the token is for, e.g. "jobs CLI on laptop".')
