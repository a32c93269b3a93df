"""Auto-reply rules: Thai-aware matching (no reliance on spaces), hand-over phrases, which
rule answers and why, in order, per credential, against the real database."""

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rchat.bots import rules
from rchat.models import AutoReply
from tests.factories import AutoReplyFactory, CredentialFactory

#: What people put between Thai words, or paste in by accident.
SEPARATORS = [" ", "\u200b", "\u200c", "\u200d", "\ufeff", "\t", "\n", "\u00a0", ".", "!", "-"]
#: Thai phrases of the kind staff enter as keywords.
THAI_PHRASES = ["คุยกับพนักงาน", "ราคาเท่าไหร่", "ส่งฟรีไหม", "ขอบคุณค่ะ", "โปรโมชั่น", "ทำอย่างไร"]


# --- normalize / phrase_in ---------------------------------------------------------------


def test_thai_phrase_matches_whatever_the_spaces_and_polite_particles_around_it():
    assert rules.phrase_in("คุยกับพนักงาน", "ขอ คุยกับ พนักงาน ค่ะ")
    assert rules.phrase_in("คุยกับพนักงาน", "ขอคุยกับพนักงานหน่อยครับ")


def test_english_matches_whatever_the_case_and_punctuation():
    assert rules.phrase_in("talk to a person", "Talk to a PERSON!!")
    assert rules.phrase_in("Talk to a person", "please, talk-to-a person?")


def test_normalize_drops_zero_width_characters_and_maps_thai_and_full_width_digits():
    assert rules.normalize("ราคา\u200b ๑๒๓\ufeff บาท") == "ราคา123บาท"
    full_width = "\uff30\uff32\uff2f \uff11\uff10\uff05"  # "PRO 10%"
    assert rules.normalize(full_width) == "pro10"
    assert rules.phrase_in("โทร 0812345678", "โทร ๐๘๑-๒๓๔-๕๖๗๘ ค่ะ")


def test_thai_vowel_and_tone_marks_count():
    """Marks are letters of the word: คะ is not ค่ะ, ไม is not ไม่."""
    assert rules.normalize("ค่ะ") != rules.normalize("คะ")
    assert not rules.phrase_in("ไม่", "ไม")
    assert rules.normalize("ไม่ใช่") == "ไม่ใช่"


def test_sara_am_typed_as_one_character_or_two_is_the_same():
    assert rules.phrase_in("ทำอย่างไร", "ท\u0e4d\u0e32 อย่างไร")


def test_symbols_emoji_and_baht_sign_are_ignored():
    assert rules.normalize("ราคา 100฿ 😀👍") == "ราคา100"


def test_an_empty_phrase_or_one_of_only_punctuation_never_matches():
    assert not rules.phrase_in("", "anything")
    assert not rules.phrase_in("!!!", "!!!")
    assert not rules.phrase_in("   ", "a b")


@given(st.text(max_size=80))
def test_normalize_is_idempotent(text):
    once = rules.normalize(text)
    assert rules.normalize(once) == once


@given(
    st.sampled_from(THAI_PHRASES),
    st.data(),
    st.text(max_size=10),
    st.text(max_size=10),
)
def test_separators_anywhere_in_a_thai_phrase_still_match(phrase, data, before, after):
    """Spaces, zero-width characters and punctuation inserted between any characters."""
    typed = "".join(
        char + "".join(data.draw(st.lists(st.sampled_from(SEPARATORS), max_size=2)))
        for char in phrase
    )
    assert rules.phrase_in(phrase, before + typed + after)


# --- asks_for_person ---------------------------------------------------------------------


def test_asks_for_person_names_the_configured_phrase_found(settings):
    settings.RCHAT = {**settings.RCHAT, "HANDOVER_PHRASES": ["ติดต่อพนักงาน", "real person"]}
    assert rules.asks_for_person("อยาก ติดต่อ พนักงาน ค่ะ") == "ติดต่อพนักงาน"
    assert rules.asks_for_person("I want a REAL person.") == "real person"
    assert rules.asks_for_person("ราคาเท่าไหร่") is None


def test_asks_for_person_with_the_default_phrases():
    assert rules.asks_for_person("ขอ คุยกับ พนักงาน ค่ะ") is not None
    assert rules.asks_for_person("Talk to a human, please") == "talk to a human"


def test_an_empty_phrase_in_the_settings_matches_nothing(settings):
    settings.RCHAT = {**settings.RCHAT, "HANDOVER_PHRASES": ["", "!!"]}
    assert rules.asks_for_person("hello!!") is None


# --- rule_for ------------------------------------------------------------------------------


@pytest.fixture
def credential(db):
    return CredentialFactory()


@pytest.mark.django_db
def test_a_keyword_rule_answers_with_why(credential):
    rule = AutoReplyFactory(credential=credential, match="ราคา\nprice", name="Prices")
    match = rules.rule_for(credential_id=credential.pk, text="ราคา เท่าไหร่ คะ", first_message=False)
    assert match.rule == rule
    assert "“ราคา”" in match.why
    assert "ราคา เท่าไหร่ คะ" in match.why
    match = rules.rule_for(
        credential_id=credential.pk, text="What's the PRICE?", first_message=False
    )
    assert match.rule == rule and "“price”" in match.why


@pytest.mark.django_db
def test_rules_are_tried_by_position_then_id(credential):
    AutoReplyFactory(credential=credential, match="ราคา", position=5, name="late")
    first = AutoReplyFactory(credential=credential, match="ราคา", position=1, name="early")
    AutoReplyFactory(credential=credential, match="ราคา", position=1, name="same, later id")
    match = rules.rule_for(credential_id=credential.pk, text="ราคา", first_message=False)
    assert match.rule == first


@pytest.mark.django_db
def test_rules_for_every_credential_apply_and_other_credentials_rules_do_not(credential):
    other = CredentialFactory()
    AutoReplyFactory(credential=other, match="ราคา", position=0)
    shared = AutoReplyFactory(credential=None, match="ราคา", position=1)
    assert rules.rule_for(credential_id=credential.pk, text="ราคา", first_message=False).rule == (
        shared
    )
    assert rules.rule_for(credential_id=None, text="ราคา", first_message=False).rule == shared


@pytest.mark.django_db
def test_inactive_rules_never_answer(credential):
    AutoReplyFactory(credential=credential, match="ราคา", active=False)
    assert rules.rule_for(credential_id=credential.pk, text="ราคา", first_message=False) is None


@pytest.mark.django_db
def test_a_greeting_answers_only_the_first_message_of_a_new_chat_room(credential):
    greeting = AutoReplyFactory(
        credential=credential, kind=AutoReply.Kind.GREETING, match="", position=0
    )
    keyword = AutoReplyFactory(credential=credential, match="ราคา", position=1)
    first = rules.rule_for(credential_id=credential.pk, text="ราคา", first_message=True)
    assert first.rule == greeting
    assert "first message" in first.why
    later = rules.rule_for(credential_id=credential.pk, text="ราคา", first_message=False)
    assert later.rule == keyword
    assert rules.rule_for(credential_id=credential.pk, text="hi", first_message=False) is None


@pytest.mark.django_db
def test_a_pattern_matches_the_text_as_written_ignoring_case(credential):
    rule = AutoReplyFactory(
        credential=credential, kind=AutoReply.Kind.PATTERN, match=r"order\s*#?\d{4}"
    )
    match = rules.rule_for(credential_id=credential.pk, text="ORDER #1234 ?", first_message=False)
    assert match.rule == rule
    assert "ORDER #1234" in match.why


@pytest.mark.django_db
def test_a_pattern_also_matches_the_normalized_text(credential):
    """A phone number typed with dashes and Thai digits meets a pattern of ten digits."""
    rule = AutoReplyFactory(credential=credential, kind=AutoReply.Kind.PATTERN, match=r"0\d{9}")
    match = rules.rule_for(
        credential_id=credential.pk, text="เบอร์ ๐๘๑-๒๓๔-๕๖๗๘ ค่ะ", first_message=False
    )
    assert match.rule == rule
    assert "0812345678" in match.why
    assert "without spaces" in match.why


@pytest.mark.django_db
def test_a_stored_pattern_that_does_not_compile_never_matches_nor_fails(credential):
    AutoReplyFactory(credential=credential, kind=AutoReply.Kind.PATTERN, match="(ราคา")
    assert rules.rule_for(credential_id=credential.pk, text="(ราคา", first_message=False) is None


@pytest.mark.django_db
def test_a_catastrophic_pattern_stored_anyway_is_never_run(credential):
    AutoReplyFactory(credential=credential, kind=AutoReply.Kind.PATTERN, match=r"(a+)+$")
    started = time.monotonic()
    text = "a" * 40 + "!"  # (a+)+$ would try 2**40 ways
    assert rules.rule_for(credential_id=credential.pk, text=text, first_message=False) is None
    assert time.monotonic() - started < 1


@pytest.mark.django_db
def test_only_the_first_text_max_length_characters_are_matched(credential, settings):
    settings.RCHAT = {**settings.RCHAT, "TEXT_MAX_LENGTH": 50}
    AutoReplyFactory(credential=credential, match="ราคา")
    AutoReplyFactory(credential=credential, kind=AutoReply.Kind.PATTERN, match="price")
    text = "x" * 60 + " ราคา price"
    assert rules.rule_for(credential_id=credential.pk, text=text, first_message=False) is None
    assert rules.rule_for(credential_id=credential.pk, text="ราคา" + text, first_message=False)


def test_pattern_error_explains_what_is_wrong():
    assert "valid regular expression" in rules.pattern_error("(unclosed")
    assert "repeats a repetition" in rules.pattern_error(r"(\w+\s?)*$")
    assert rules.pattern_error(r"(?:\w+\s?)*+") == ""
    assert rules.pattern_error(r"0\d{9}") == ""
    assert rules.pattern_error("") != ""


# --- rules_explain -------------------------------------------------------------------------


@pytest.mark.django_db
def test_rules_explain_lists_every_active_rule_and_marks_the_one_that_answers(credential):
    greeting = AutoReplyFactory(credential=credential, kind=AutoReply.Kind.GREETING, position=0)
    shipping = AutoReplyFactory(credential=credential, match="ส่งฟรี\nค่าส่ง", position=1)
    price = AutoReplyFactory(credential=None, match="ราคา", position=2)
    again = AutoReplyFactory(credential=credential, match="เท่าไหร่", position=3)
    AutoReplyFactory(credential=credential, match="ราคา", active=False)
    AutoReplyFactory(credential=CredentialFactory(), match="ราคา")

    checks = rules.rules_explain(
        credential_id=credential.pk, text="ราคา เท่าไหร่", first_message=False
    )
    assert [check.rule for check in checks] == [greeting, shipping, price, again]
    assert [check.matched for check in checks] == [False, False, True, True]
    assert [check.answers for check in checks] == [False, False, True, False]
    assert "only the first message" in checks[0].why
    assert "“ส่งฟรี”" in checks[1].why and "“ค่าส่ง”" in checks[1].why
    assert "“ราคา”" in checks[2].why
    answer = rules.rule_for(credential_id=credential.pk, text="ราคา เท่าไหร่", first_message=False)
    assert answer.rule == price and answer.why == checks[2].why


@pytest.mark.django_db
def test_a_rule_changed_applies_to_the_next_message(credential):
    """Nothing cached: a rule switched off in admin stops answering at once."""
    rule = AutoReplyFactory(credential=credential, match="ราคา")
    assert rules.rule_for(credential_id=credential.pk, text="ราคา", first_message=False)
    AutoReply.objects.filter(pk=rule.pk).update(active=False)
    assert rules.rule_for(credential_id=credential.pk, text="ราคา", first_message=False) is None


@pytest.mark.django_db
def test_rule_for_is_one_query(credential, django_assert_num_queries):
    AutoReplyFactory.create_batch(5, credential=credential, match="ไม่มี")
    with django_assert_num_queries(1):
        assert rules.rule_for(credential_id=credential.pk, text="ราคา", first_message=True) is None
