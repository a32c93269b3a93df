from django.db import models


class BaselineRow(models.Model):
    """One row per call to the baseline view: the least a webhook receiver must do."""

    body = models.BinaryField()
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"baseline row {self.pk}"
