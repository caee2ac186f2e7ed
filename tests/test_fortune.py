"""The daily fortune generator: deterministic, Chinese, profile-aware, never the same text twice in 30 days."""

from __future__ import annotations

import re
from datetime import date, timedelta

import orjson
import pytest

from bipupu_server.mailbox import check_pattern
from bipupu_server.services import fortune
from bipupu_server.services.fortune import daily_fortune, zodiac_sign

DAY = date(2026, 11, 21)
ALICE = "00000002"
SIGNS = {"白羊座", "金牛座", "双子座", "巨蟹座", "狮子座", "处女座", "天秤座", "天蝎座", "射手座", "摩羯座",
         "水瓶座", "双鱼座"}
COLOUR_HEX = dict(fortune.COLOURS)
GOOD_BAD_LINE = re.compile(r"^宜：(\S.*?)\s+忌：(\S.*)$")
LUCKY_LINE = re.compile(r"^幸运色：(\S+)\s+幸运数字：(\d+)$")
MBTI_LINE = re.compile(r"^[EI][NS][TF][JP]")
RICH_PROFILE = {"birthday": "1995-08-17", "mbti": "infp", "bazi": "乙亥 甲申 丙子 庚寅", "zodiac": "狮子座"}


def lines_of(content: str) -> list[str]:
    return content.split("\n")


def body(content: str) -> str:
    """The fortune without its first (date) line."""
    return "\n".join(lines_of(content)[1:])


def bipupu_id(n: int) -> str:
    return f"{n:08d}"


def assert_well_formed(day: date, result: fortune.Fortune) -> None:
    """Chinese fortune text for `day` with 宜/忌 and lucky colour/number lines, and a pattern lit in that colour."""
    content = result.content
    assert isinstance(content, str) and 1 <= len(content) <= 500
    assert re.search(r"[\u4e00-\u9fff]", content)
    lines = lines_of(content)
    assert lines[0].startswith(f"{day.month}月{day.day}日"), lines[0]
    good_bad = [m for m in map(GOOD_BAD_LINE.match, lines) if m]
    assert len(good_bad) == 1, content
    assert good_bad[0].group(1) != good_bad[0].group(2)
    lucky = [m for m in map(LUCKY_LINE.match, lines) if m]
    assert len(lucky) == 1, content
    colour_name, number = lucky[0].groups()
    assert colour_name in COLOUR_HEX
    assert 1 <= int(number) <= 99
    pattern = result.pattern
    assert isinstance(pattern, dict)
    assert orjson.loads(check_pattern(pattern)) == {**pattern, "led_color": pattern["led_color"].upper()}
    assert pattern["led_color"].upper() == COLOUR_HEX[colour_name].upper()


# Deterministic -----------------------------------------------------------------------------------

def test_same_day_user_and_profile_give_the_same_fortune():
    first = daily_fortune(DAY, ALICE, dict(RICH_PROFILE))
    again = daily_fortune(DAY, ALICE, dict(RICH_PROFILE))
    assert again.content == first.content
    assert again.pattern == first.pattern
    # The same profile written in another key order is the same profile.
    reordered = dict(reversed(list(RICH_PROFILE.items())))
    assert daily_fortune(DAY, ALICE, reordered) == first


def test_a_different_user_gives_a_different_fortune():
    contents = {daily_fortune(DAY, bipupu_id(n), {}).content for n in range(1, 51)}
    assert len(contents) == 50


def test_a_different_day_gives_a_different_fortune_even_without_the_date():
    bodies = [body(daily_fortune(DAY + timedelta(days=k), ALICE, {}).content) for k in range(30)]
    assert len(set(bodies)) == 30


def test_a_different_profile_gives_a_different_fortune():
    profiles = [{}, {"bazi": "甲子"}, {"zodiac": "天蝎座"}, {"mbti": "ENTJ"}, {"birthday": "2001-03-04"},
                {"birthday": "2001-03-05"}, {"nickname_hint": "星语者"}, {"bazi": "甲子", "zodiac": "天蝎座"}]
    results = [daily_fortune(DAY, ALICE, p) for p in profiles]
    assert len({(r.content, orjson.dumps(r.pattern)) for r in results}) == len(profiles)


# Content and pattern -----------------------------------------------------------------------------

@pytest.mark.parametrize("profile", [{}, RICH_PROFILE, {"birthday": "08-17"}, {"mbti": "ESTJ"}])
def test_content_is_chinese_with_yi_ji_lucky_colour_and_number_and_the_date(profile):
    result = daily_fortune(DAY, ALICE, profile)
    assert_well_formed(DAY, result)
    assert "11月21日" in lines_of(result.content)[0]
    assert "宜" in result.content and "忌" in result.content


def test_every_fortune_of_a_year_is_well_formed_for_a_sample_of_users():
    for n in range(1, 11):
        for k in range(0, 366, 7):
            day = date(2026, 1, 1) + timedelta(days=k)
            assert_well_formed(day, daily_fortune(day, bipupu_id(n), RICH_PROFILE if n % 2 else {}))


def test_the_lucky_colour_named_in_the_text_lights_the_device():
    seen = set()
    for n in range(1, 80):
        result = daily_fortune(DAY, bipupu_id(n), {})
        name = next(m for m in map(LUCKY_LINE.match, lines_of(result.content)) if m).group(1)
        assert result.pattern["led_color"] == COLOUR_HEX[name]
        seen.add(name)
    assert len(seen) > 8  # the colour really varies across users


def test_a_long_profile_still_fits_in_500_characters():
    profile = {"birthday": "1995-08-17", "mbti": "INFP", "notes": "星" * 1500}
    for k in range(40):
        assert len(daily_fortune(DAY + timedelta(days=k), ALICE, profile).content) <= 500


# Profile aware -----------------------------------------------------------------------------------

def test_birthday_with_a_year_gives_sign_and_chinese_zodiac_animal():
    content = daily_fortune(DAY, ALICE, {"birthday": "1995-08-17"}).content
    assert "狮子座" in content
    assert "属猪" in content


def test_birthday_without_a_year_gives_the_sign_but_no_animal():
    content = daily_fortune(DAY, ALICE, {"birthday": "08-17"}).content
    assert "狮子座" in content
    assert "属" not in content


@pytest.mark.parametrize("birthday", ["1995-02-30", "tomorrow", 19950817, "02-30", "", None, ["1995-08-17"]])
def test_a_bad_birthday_is_ignored(birthday):
    result = daily_fortune(DAY, ALICE, {"birthday": birthday})
    assert_well_formed(DAY, result)
    assert not any(sign in result.content for sign in SIGNS)
    assert "属" not in result.content


def test_mbti_adds_a_tip_line_in_capitals():
    lines = lines_of(daily_fortune(DAY, ALICE, {"mbti": "infp"}).content)
    tips = [line for line in lines if line.startswith("INFP")]
    assert len(tips) == 1
    assert len(tips[0]) > len("INFP")


@pytest.mark.parametrize("mbti", ["XXXX", "INF", "", 42, None])
def test_a_bad_mbti_is_ignored(mbti):
    result = daily_fortune(DAY, ALICE, {"mbti": mbti})
    assert_well_formed(DAY, result)
    assert not any(MBTI_LINE.match(line) for line in lines_of(result.content))
    assert "XXXX" not in result.content


@pytest.mark.parametrize("profile", [None, [], ["birthday", "1995-08-17"], "INFP", 7])
def test_a_profile_that_is_not_an_object_works_like_an_empty_one(profile):
    result = daily_fortune(DAY, ALICE, profile)
    assert_well_formed(DAY, result)
    assert not any(sign in result.content for sign in SIGNS)
    assert result == daily_fortune(DAY, ALICE, {})


# Variety -----------------------------------------------------------------------------------------

def test_no_user_gets_the_same_text_twice_within_30_days():
    start = date(2026, 1, 1)
    for n in range(1, 201):
        user = bipupu_id(n)
        last_content: dict[str, int] = {}
        last_body: dict[str, int] = {}
        for k in range(400):
            content = daily_fortune(start + timedelta(days=k), user, {}).content
            for seen, text in ((last_content, content), (last_body, body(content))):
                if text in seen:
                    assert k - seen[text] >= 30, (user, k, seen[text], text)
                seen[text] = k


def test_a_changing_profile_does_not_make_the_text_repeat_within_30_days():
    profiles = [{}, {"mbti": "INFP"}, {"birthday": "1995-08-17"}, {"mbti": "ESTJ", "birthday": "03-01"}]
    start = date(2026, 3, 1)
    for n in range(1, 21):
        user = bipupu_id(n)
        last_body: dict[str, int] = {}
        for k in range(120):
            text = body(daily_fortune(start + timedelta(days=k), user, profiles[(k * 7 + n) % 4]).content)
            if text in last_body:
                assert k - last_body[text] >= 30, (user, k, text)
            last_body[text] = k


def test_one_day_gives_many_different_fortunes_across_users():
    contents = [daily_fortune(DAY, bipupu_id(n), {}).content for n in range(1, 201)]
    assert len(set(contents)) == 200
    assert len({body(c) for c in contents}) >= 190
    lucky_lines = {next(line for line in lines_of(c) if LUCKY_LINE.match(line)) for c in contents}
    assert len(lucky_lines) >= 150


# Zodiac ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("month", "day", "sign"), [
    (1, 19, "摩羯座"), (1, 20, "水瓶座"), (12, 22, "摩羯座"), (12, 21, "射手座"), (12, 31, "摩羯座"),
    (1, 1, "摩羯座"), (2, 18, "水瓶座"), (2, 19, "双鱼座"), (3, 21, "白羊座"), (8, 22, "狮子座"),
    (8, 23, "处女座"), (7, 23, "狮子座"), (10, 23, "天秤座"), (10, 24, "天蝎座"),
])
def test_zodiac_sign_boundaries(month, day, sign):
    assert zodiac_sign(month, day) == sign
