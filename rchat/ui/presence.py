"""The answer to a page's presence beat, the same for the inbox and admin."""

from django.http import HttpResponse, JsonResponse
from django.utils.translation import gettext

from .. import presence, services


def presence_answer(request, room):
    """Record the POSTed ``state`` ("viewing", "typing" or "left") of the signed-in user
    on ``room``: 204, or 400 with ``{"error": reason}`` for any other state."""
    state = request.POST.get("state", "")
    if state not in presence.STATES:
        return JsonResponse(
            {
                "error": gettext("state must be one of: %(states)s.")
                % {"states": ", ".join(presence.STATES)}
            },
            status=400,
        )
    services.presence_report(room=room, user=request.user, state=state)
    return HttpResponse(status=204)
