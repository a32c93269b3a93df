"""The baseline the webhook is measured against: a bare Django view that inserts one row.

It has what any receiver needs and nothing of rchat's: the same server, settings,
middleware and database, one INSERT of the body, and the same JSON answer.
"""

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import BaselineRow


@csrf_exempt
@login_not_required
@require_POST
def baseline(request):
    BaselineRow.objects.create(body=request.body)
    return JsonResponse({"status": "SUCCESS"})
