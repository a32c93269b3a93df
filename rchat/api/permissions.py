"""Who may use the API: the same rule as the inbox pages."""

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import SAFE_METHODS, BasePermission

VIEW_PERMISSION = "rchat.view_chatroom"
REPLY_PERMISSION = "rchat.reply_chatroom"


class CanSeeChatRooms(BasePermission):
    """Reading needs ``rchat.view_chatroom``; anything else also ``rchat.reply_chatroom``.

    Like DRF's DjangoModelPermissions, but replying, assigning, closing and reopening
    are one permission of their own, separate from editing rows in admin.
    """

    message = _("You do not have permission to see chat rooms.")

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return user.has_perm(VIEW_PERMISSION)
        if not user.has_perms([VIEW_PERMISSION, REPLY_PERMISSION]):
            self.message = _("You may read chat rooms but not reply or change them.")
            return False
        return True
