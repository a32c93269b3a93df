from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from rchat import services
from rchat.exceptions import RChatConfigurationError
from rchat.services.staff import GROUP_PERMISSIONS


class Command(BaseCommand):
    help = (
        "Create or update the groups 'R-Chat operators' and 'R-Chat agents' with exactly "
        "the permissions each needs, and optionally put people in them."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--agent",
            action="append",
            default=[],
            metavar="USERNAME",
            help="Put this user in 'R-Chat agents' (repeatable).",
        )
        parser.add_argument(
            "--operator",
            action="append",
            default=[],
            metavar="USERNAME",
            help="Put this user in 'R-Chat operators' and give them admin access "
            "(staff status); repeatable.",
        )

    def handle(self, *args, agent, operator, **options):
        User = get_user_model()
        wanted = [("agent", name) for name in agent] + [("operator", name) for name in operator]
        users = {}
        for _role, username in wanted:
            try:
                users[username] = User._default_manager.get_by_natural_key(username)
            except User.DoesNotExist:
                raise CommandError(
                    _("No user %(username)r: create it first (createsuperuser, or admin).")
                    % {"username": username}
                ) from None
        try:
            groups = services.staff_groups_sync()
        except RChatConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        for name, codenames in GROUP_PERMISSIONS.items():
            self.stdout.write(
                _("%(group)s: %(permissions)s")
                % {"group": groups[name].name, "permissions": ", ".join(codenames)}
            )
        for role, username in wanted:
            group = services.staff_member_add(user=users[username], role=role)
            self.stdout.write(
                _("%(username)s is in %(group)s.") % {"username": username, "group": group.name}
            )
