"""Django admin for operators: credentials, chat rooms, messages, webhook events."""

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import services
from .exceptions import RChatAPIError, RChatConfigurationError
from .models import Credential


class CredentialForm(forms.ModelForm):
    # Secrets are write-only in admin: the field is never filled from the database,
    # and left empty on change it keeps the stored token.
    token = forms.CharField(
        label=_("Chatday-Token"),
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text=_("From R-Chat's settings, menu \u201cR-Chat API\u201d. Leave empty to keep."),
    )

    class Meta:
        model = Credential
        fields = ["name", "base_url", "token"]

    def clean_token(self):
        token = self.cleaned_data.get("token")
        if not token and not (self.instance and self.instance.pk):
            raise forms.ValidationError(_("A new credential needs its Chatday-Token."))
        return token

    def save(self, commit=True):
        token = self.cleaned_data.get("token")
        if not token:
            # Keep what is stored; the empty field only means "unchanged".
            self.instance.token = Credential.objects.get(pk=self.instance.pk).token
        return super().save(commit=commit)


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    form = CredentialForm
    list_display = ["name", "status", "masked_token", "registered_at", "last_webhook_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    readonly_fields = [
        "masked_token",
        "masked_signature_token",
        "status",
        "registered_at",
        "last_error",
        "last_webhook_at",
        "webhook_url",
    ]
    actions = ["register"]

    @admin.display(description=_("Chatday-Token"))
    def masked_token(self, obj):
        return obj.masked_token

    @admin.display(description=_("Chatday-Signature-Token"))
    def masked_signature_token(self, obj):
        return obj.masked_signature_token or "—"

    @admin.display(description=_("webhook URL"))
    def webhook_url(self, obj):
        return obj.webhook_url() if obj.pk else "—"

    @admin.action(description=_("Register with R-Chat"))
    def register(self, request, queryset):
        done = 0
        for credential in queryset:
            try:
                services.credential_register(credential=credential)
            except (RChatAPIError, RChatConfigurationError) as exc:
                self.message_user(request, f"{credential.name}: {exc}", messages.ERROR)
            else:
                done += 1
        if done:
            self.message_user(
                request,
                ngettext(
                    "%(count)d credential registered.",
                    "%(count)d credentials registered.",
                    done,
                )
                % {"count": done},
                messages.SUCCESS,
            )
