import pytest

from tests.factories import CredentialFactory


@pytest.mark.django_db
def test_credential_round_trips_its_tokens():
    """A saved credential reads back the same tokens it was given."""
    credential = CredentialFactory(token="cdt_abcdefghijklmnop")
    credential.refresh_from_db()
    assert credential.token == "cdt_abcdefghijklmnop"
