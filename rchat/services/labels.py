"""Labels: creating and renaming them, and putting them on chat rooms or taking them off."""

from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from .. import payloads
from ..models import Label


def _label_name_clean(name):
    """``name`` stripped, or ValueError with the reason it cannot be a label's name."""
    name = (name or "").strip()
    if not name:
        raise ValueError(gettext("A label needs a name."))
    if len(name) > Label.NAME_MAX:
        raise ValueError(
            gettext("A label's name has at most %(n)d characters.") % {"n": Label.NAME_MAX}
        )
    if payloads.inbound_clean(name) != name:
        raise ValueError(
            gettext("A label's name cannot hold a NUL character or an unpaired surrogate.")
        )
    return name


def label_check(*, name, color=Label.Color.GREY, label=None):
    """What ``label_save`` checks, without saving: the name cleaned, or ValueError.

    For forms that show the reason next to the field before anything is saved.
    """
    name = _label_name_clean(name)
    if color not in Label.Color.values:
        raise ValueError(gettext("Unknown colour: %(color)s.") % {"color": color})
    others = Label.objects.filter(name__iexact=name)
    if label is not None and label.pk:
        others = others.exclude(pk=label.pk)
    if others.exists():
        raise ValueError(_taken() % {"name": name})
    return name


def _taken():
    return gettext("A label named “%(name)s” exists already.")


def label_save(*, name, color=Label.Color.GREY, description="", label=None):
    """Create a label, or with ``label`` rename / recolour it; returns it.

    Names are unique whatever their case ("VIP" and "vip" are one label): a name
    another label has is a ValueError saying so, as is an empty, too long or
    unprintable one, or a colour outside ``Label.Color``.
    """
    name = label_check(name=name, color=color, label=label)
    label = label or Label()
    label.name, label.color, label.description = name, color, (description or "").strip()
    try:
        # Its own savepoint: a concurrent save of the same name fails alone, not the
        # caller's whole transaction. The database's constraint is the real guard
        # (label_check only gives the common case a clear reason first).
        with transaction.atomic():
            label.save()
    except IntegrityError:
        raise ValueError(_taken() % {"name": name}) from None
    return label


def room_labels_set(*, room, labels):
    """Make ``labels`` (Label rows) the room's labels, replacing the ones it had."""
    with transaction.atomic():
        room.labels.set(labels)
    return room


def room_label_add(*, room, label):
    """Put ``label`` on the room (nothing happens if it has it already)."""
    room.labels.add(label)
    return room


def room_label_remove(*, room, label):
    """Take ``label`` off the room (nothing happens if it does not have it)."""
    room.labels.remove(label)
    return room
