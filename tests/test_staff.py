"""Signing in to the inbox, and the groups operators and agents belong to."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from rchat.services.staff import AGENTS, GROUP_PERMISSIONS, OPERATORS
from tests.factories import ChatRoomFactory, CredentialFactory, UserFactory

pytestmark = pytest.mark.django_db


def groups_command(*args):
    out = StringIO()
    call_command("rchat_groups", *args, stdout=out)
    return out.getvalue().splitlines()


def codenames(group_name):
    return sorted(Group.objects.get(name=group_name).permissions.values_list("codename", flat=True))


# --- rchat_groups --------------------------------------------------------------------------


def test_the_command_creates_both_groups_with_exactly_their_permissions():
    lines = groups_command()

    assert codenames(AGENTS) == ["reply_chatroom", "view_chatroom"]
    assert codenames(OPERATORS) == sorted(GROUP_PERMISSIONS[OPERATORS])
    assert "delete_credential" not in codenames(OPERATORS)
    assert lines == [
        f"{AGENTS}: view_chatroom, reply_chatroom",
        f"{OPERATORS}: {', '.join(GROUP_PERMISSIONS[OPERATORS])}",
    ]


def test_running_it_again_puts_the_groups_back_as_they_should_be():
    groups_command()
    agents = Group.objects.get(name=AGENTS)
    agents.permissions.add(Permission.objects.get(codename="delete_chatroom"))

    groups_command()

    assert codenames(AGENTS) == ["reply_chatroom", "view_chatroom"]
    assert Group.objects.filter(name__in=[AGENTS, OPERATORS]).count() == 2


def test_an_operator_gets_staff_status_and_an_agent_does_not():
    olivia, arthit = (
        UserFactory(username="olivia", is_staff=False),
        UserFactory(username="arthit", is_staff=False),
    )

    lines = groups_command("--operator", "olivia", "--agent", "arthit")

    olivia.refresh_from_db()
    arthit.refresh_from_db()
    assert (olivia.is_staff, arthit.is_staff) == (True, False)
    assert list(olivia.groups.values_list("name", flat=True)) == [OPERATORS]
    assert list(arthit.groups.values_list("name", flat=True)) == [AGENTS]
    assert lines[-2:] == [f"arthit is in {AGENTS}.", f"olivia is in {OPERATORS}."]


def test_what_each_group_may_do_is_what_the_inbox_and_admin_allow(client):
    """An agent answers in the inbox but has no admin; an operator has both."""
    olivia = UserFactory(username="olivia", is_staff=False)
    arthit = UserFactory(username="arthit", is_staff=False)
    groups_command("--operator", "olivia", "--agent", "arthit")
    room = ChatRoomFactory()
    credential = CredentialFactory()

    client.force_login(arthit)
    assert client.get(reverse("rchat:inbox-room", kwargs={"pk": room.pk})).status_code == 200
    assert client.get(reverse("admin:rchat_chatroom_changelist")).status_code == 302

    client.force_login(olivia)
    for url in (
        reverse("rchat:inbox-room", kwargs={"pk": room.pk}),
        reverse("admin:rchat_chatroom_change", args=[room.pk]),
        reverse("admin:rchat_credential_change", args=[credential.pk]),
        reverse("admin:rchat_message_changelist"),
        reverse("admin:rchat_webhookevent_changelist"),
    ):
        assert client.get(url).status_code == 200, url
    assert (
        client.get(reverse("admin:rchat_credential_delete", args=[credential.pk])).status_code
        == 403
    )


def test_an_unknown_user_is_a_one_line_error_and_changes_nothing():
    with pytest.raises(CommandError, match="No user 'nobody': create it first"):
        groups_command("--agent", "nobody")

    assert not Group.objects.filter(name__in=[AGENTS, OPERATORS]).exists()


def test_without_rchats_permissions_it_says_to_migrate():
    Permission.objects.filter(codename="reply_chatroom").delete()

    with pytest.raises(CommandError, match=r"reply_chatroom\): run 'python manage.py migrate'"):
        groups_command()


# --- rchat_generate_key ----------------------------------------------------------------


def test_generate_key_prints_a_new_fernet_key_even_while_the_configured_ones_are_broken(
    settings,
):
    settings.RCHAT = {**settings.RCHAT, "ENCRYPTION_KEYS": ["not-a-key"]}
    printed = set()
    for _ in range(2):
        out = StringIO()
        call_command("rchat_generate_key", stdout=out)
        key = out.getvalue().strip()
        Fernet(key)  # raises on anything but a Fernet key
        printed.add(key)

    assert len(printed) == 2


# --- Signing in and out ------------------------------------------------------------------


def test_the_sign_in_page_leads_to_the_inbox_and_sign_out_back_to_it(client):
    agent = UserFactory(username="arthit", password="s3cret-pass", is_staff=False)
    groups_command("--agent", "arthit")

    page = client.get(reverse("rchat:login"))
    assert page.status_code == 200
    assert 'action="/rchat/login/"' in page.content.decode()

    signed_in = client.post(
        reverse("rchat:login"), {"username": "arthit", "password": "s3cret-pass"}
    )
    assert signed_in.status_code == 302 and signed_in["Location"] == reverse("rchat:inbox")
    inbox = client.get(reverse("rchat:inbox")).content.decode()
    assert f'action="{reverse("rchat:logout")}"' in inbox and agent.username in inbox

    signed_out = client.post(reverse("rchat:logout"))
    assert signed_out.status_code == 302 and signed_out["Location"] == reverse("rchat:login")
    assert client.get(reverse("rchat:inbox")).status_code == 302


def test_sign_in_follows_next_and_refuses_a_wrong_password_with_a_form_error(client):
    UserFactory(username="arthit", password="s3cret-pass", is_staff=False)
    groups_command("--agent", "arthit")
    room = ChatRoomFactory()
    room_url = reverse("rchat:inbox-room", kwargs={"pk": room.pk})

    refused = client.post(reverse("rchat:login"), {"username": "arthit", "password": "wrong"})
    assert refused.status_code == 200
    assert 'role="alert"' in refused.content.decode()

    sent = client.get(room_url)
    assert sent["Location"] == f"{reverse('rchat:login')}?next={room_url}"
    signed_in = client.post(
        reverse("rchat:login"), {"username": "arthit", "password": "s3cret-pass", "next": room_url}
    )
    assert signed_in["Location"] == room_url


def test_a_signed_in_visitor_of_the_sign_in_page_goes_to_the_inbox(client):
    client.force_login(UserFactory())

    assert client.get(reverse("rchat:login"))["Location"] == reverse("rchat:inbox")
