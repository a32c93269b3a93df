"""The webhook R-Chat calls for every end-user message (built out in the inbound work)."""

from django.contrib.auth.decorators import login_not_required
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from rest_framework.response import Response
from rest_framework.views import APIView


@method_decorator([csrf_exempt, login_not_required], name="dispatch")
class WebhookView(APIView):
    authentication_classes = []
    permission_classes = []

    def post(self, request, key=None):
        return Response({"status": "SUCCESS"})
