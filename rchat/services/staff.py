"""Staff: the two groups rchat's people belong to, with the permissions each needs.

*R-Chat agents* answer conversations from the inbox (and the API). *R-Chat operators*
run R-Chat from Django admin: credentials, conversations, messages and webhook events.
Deleting rows stays with superusers: a credential's rooms and messages are records.
"""

from django.contrib.auth.models import Group, Permission
from django.db import transaction

from ..exceptions import RChatConfigurationError

AGENTS = "R-Chat agents"
OPERATORS = "R-Chat operators"

_AGENT_PERMISSIONS = ("view_chatroom", "reply_chatroom")

#: Each group's permissions, as ``codename``s of rchat's models.
GROUP_PERMISSIONS = {
    AGENTS: _AGENT_PERMISSIONS,
    OPERATORS: (
        *_AGENT_PERMISSIONS,
        # Close, reopen and assign rooms in admin.
        "change_chatroom",
        # Add credentials, register them, rotate and test their tokens.
        "view_credential",
        "add_credential",
        "change_credential",
        # Messages, "Send again", and the delivery attempts shown with each message.
        "view_message",
        "change_message",
        "view_deliveryattempt",
        # Webhook events and "Re-process".
        "view_webhookevent",
        "change_webhookevent",
        # Private notes and uploaded attachments, to find them (deleting: superusers).
        "view_note",
        "view_attachment",
    ),
}

#: What a role given on the command line means: its group, and whether admin is open.
ROLES = {"agent": (AGENTS, False), "operator": (OPERATORS, True)}


def staff_groups_sync():
    """Create or update both groups so each holds exactly ``GROUP_PERMISSIONS``.

    Idempotent. Permissions a site added to these groups by hand are taken away:
    give extra rights through a group of the site's own. Raises
    ``RChatConfigurationError`` when rchat's permissions do not exist yet (``migrate``
    creates them).
    """
    wanted = {codename for codenames in GROUP_PERMISSIONS.values() for codename in codenames}
    found = {
        permission.codename: permission
        for permission in Permission.objects.filter(
            content_type__app_label="rchat", codename__in=wanted
        )
    }
    missing = sorted(wanted - found.keys())
    if missing:
        raise RChatConfigurationError(
            f"rchat's permissions are missing ({', '.join(missing)}): run "
            "'python manage.py migrate' first."
        )
    groups = {}
    with transaction.atomic():
        for name, codenames in GROUP_PERMISSIONS.items():
            group, _ = Group.objects.get_or_create(name=name)
            group.permissions.set([found[codename] for codename in codenames])
            groups[name] = group
    return groups


def staff_member_add(*, user, role):
    """Put ``user`` in the group of ``role`` ("agent" or "operator").

    Operators work in Django admin, so they also get ``is_staff``; agents do not need
    it (the inbox has its own sign-in page).
    """
    name, needs_admin = ROLES[role]
    group = staff_groups_sync()[name]
    user.groups.add(group)
    if needs_admin and not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return group
