"""The daily fortune: Chinese text and a matching pattern, deterministic, no network.

Same (date, bipupu_id, cosmic_profile) → same fortune. The closing line (36 of them) is
chosen by a per-user rotation of the day number that never repeats within 36 days, so no
fortune text repeats within 30 days whatever the profile does (and the date heads each text).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

# (name, #RRGGBB) — the lucky colour also lights the pupu device.
COLOURS = [
    ("樱花粉", "#FF69B4"), ("星空蓝", "#1E90FF"), ("薄荷绿", "#3EB489"), ("琥珀金", "#FFBF00"),
    ("珊瑚橙", "#FF7F50"), ("薰衣草紫", "#B57EDC"), ("月光银", "#C0C0C0"), ("朱砂红", "#E34234"),
    ("湖水青", "#00CED1"), ("柠檬黄", "#FFF44F"), ("松石绿", "#40E0D0"), ("葡萄紫", "#6F2DA8"),
    ("蜜桃粉", "#FFB6A3"), ("海盐蓝", "#5DADE2"), ("奶油白", "#FFFDD0"), ("晚霞橘", "#FD5E53"),
]
GOOD = ["表白", "早起", "散步", "整理房间", "给老朋友写信", "学新技能", "喝一杯热茶", "听一首老歌", "晒太阳",
        "做计划", "读几页书", "夸夸别人", "尝试新菜", "存钱", "运动半小时", "拍一张天空", "早点睡", "发一张明信片",
        "断舍离", "去公园", "练字", "做手工", "和家人吃饭", "主动打招呼"]
BAD = ["熬夜", "冲动消费", "翻旧账", "赖床", "吃太辣", "拖延", "刷手机到深夜", "生闷气", "说丧气话",
       "借钱给人", "在意别人的眼光", "空腹喝咖啡", "乱发脾气", "一个人硬扛", "错过早餐", "忘记喝水", "把话憋在心里",
       "轻易放弃", "过度比较", "久坐不动"]
LINES = [
    "今天的风会把好消息吹到你身边。", "慢一点也没关系，星星都在等你。", "你比想象中更勇敢。",
    "把心事写成明信片，寄给明天的自己。", "有人正悄悄地想念你。", "一个小小的决定，会带来大大的惊喜。",
    "今天适合把温柔留给自己。", "宇宙正在为你排好队的好运。", "别急，花开有时。", "你的笑容是今天最亮的灯。",
    "答案就藏在下一次出发里。", "给平凡的日子加一点点甜。", "认真生活的人，运气都不会太差。",
    "你发出的光，总会有人看见。", "今天的烦恼，明天就会变成故事。", "试着相信那个直觉。",
    "一杯热饮，一段好时光。", "小事做好，就是好运的开始。", "有些相遇，正在路上。", "抬头看看，云很好看。",
    "把今天过成值得纪念的一天。", "你值得被好好对待，尤其是被自己。", "星光不问赶路人。",
    "心里有光，脚下有路。", "今天也请多多关照自己。", "好运像气泡，轻轻一碰就会出现。",
    "世界很大，但你刚刚好。", "所有的等待都有回音。", "你种下的温柔，正在发芽。", "保持好奇，奇迹会来。",
    "把喜欢的事做到最好。", "今天的你，闪闪发光。", "不必完美，真实就很好。", "风会记得每一朵花的香。",
    "去见想见的人吧。", "每一步都算数。",
]
STARS = ["★★☆☆☆", "★★★☆☆", "★★★★☆", "★★★★★"]
EFFECTS = ["breathe", "blink", "breathe", "rainbow"]  # by the number of stars
FONTS = ["neon", "pixel", "serif", "handwriting"]

SIGNS = [  # (last day of the sign's span as (month, day), name)
    ((1, 19), "摩羯座"), ((2, 18), "水瓶座"), ((3, 20), "双鱼座"), ((4, 19), "白羊座"), ((5, 20), "金牛座"),
    ((6, 21), "双子座"), ((7, 22), "巨蟹座"), ((8, 22), "狮子座"), ((9, 22), "处女座"), ((10, 23), "天秤座"),
    ((11, 22), "天蝎座"), ((12, 21), "射手座"), ((12, 31), "摩羯座"),
]
ANIMALS = "鼠牛虎兔龙蛇马羊猴鸡狗猪"
MBTI_TIPS = {
    "E": "把好心情分享给身边的人", "I": "给自己留一段安静的时间",
    "N": "跟着灵感走一走", "S": "从手边的小事开始",
    "T": "理性之外也听听心声", "F": "温柔之外也记得坚持自己",
    "J": "计划之外留一点空白", "P": "随性之中给自己一个小目标",
}


@dataclass(frozen=True)
class Fortune:
    content: str
    pattern: dict[str, Any]


def zodiac_sign(month: int, day: int) -> str:
    for (last_month, last_day), name in SIGNS:
        if (month, day) <= (last_month, last_day):
            return name
    return "摩羯座"


def _birthday(profile: dict[str, Any]) -> tuple[int | None, int, int] | None:
    """(year or None, month, day) from 'YYYY-MM-DD' or 'MM-DD', if the profile has a usable one."""
    raw = profile.get("birthday")
    if not isinstance(raw, str):
        return None
    parts = raw.strip().split("-")
    try:
        numbers = [int(p) for p in parts]
        if len(numbers) == 3:
            born = date(*numbers)
            return born.year, born.month, born.day
        if len(numbers) == 2:
            date(2000, *numbers)
            return None, numbers[0], numbers[1]
    except (ValueError, TypeError):
        return None
    return None


def _mbti(profile: dict[str, Any]) -> str | None:
    raw = profile.get("mbti")
    if isinstance(raw, str):
        code = raw.strip().upper()[:4]
        if len(code) == 4 and code[0] in "EI" and code[1] in "NS" and code[2] in "TF" and code[3] in "JP":
            return code
    return None


def _rotation(items: list, seed: bytes, n: int) -> Any:
    """items[(a·n + b) mod L] with a coprime to L: distinct for any L consecutive days, per user."""
    size = len(items)
    a = int.from_bytes(seed[:4], "big") % size or 1
    while math.gcd(a, size) != 1:
        a = a % (size - 1) + 1
    return items[(a * n + int.from_bytes(seed[4:8], "big")) % size]


def daily_fortune(day: date, bipupu_id: str, profile: dict[str, Any] | None = None) -> Fortune:
    """The fortune of `bipupu_id` for `day`, shaped by what the cosmic profile tells."""
    profile = profile if isinstance(profile, dict) else {}
    n = day.toordinal()
    # The day's mood depends on everything; the rotating parts only on the user, so they cycle
    # without repeats whatever the profile becomes.
    mood = random.Random(hashlib.sha256(
        f"{day.isoformat()}|{bipupu_id}|{orjson.dumps(profile, option=orjson.OPT_SORT_KEYS).decode()}".encode()
    ).digest())
    seed = hashlib.sha256(f"fortune|{bipupu_id}".encode()).digest()
    line = _rotation(LINES, seed[0:8], n)
    good = _rotation(GOOD, seed[8:16], n)
    bad = _rotation(BAD, seed[16:24], n)
    colour_name, colour = _rotation(COLOURS, seed[24:32], n)
    number = mood.randint(1, 99)
    stars = mood.randrange(len(STARS))

    head = [f"{day.month}月{day.day}日"]
    born = _birthday(profile)
    if born is not None:
        year, month, dom = born
        head.append(zodiac_sign(month, dom))
        if year is not None:
            head.append(f"属{ANIMALS[(year - 4) % 12]}")
    lines = [" · ".join(head) + " 今日运势", f"运势：{STARS[stars]}", f"宜：{good}　忌：{bad}",
             f"幸运色：{colour_name}　幸运数字：{number}", line]
    mbti = _mbti(profile)
    if mbti is not None:
        lines.append(f"{mbti} 小贴士：{MBTI_TIPS[mbti[n % 4]]}。")
    pattern = {
        "led_color": colour,
        "effect": EFFECTS[stars],
        "font": FONTS[n % len(FONTS)],
        "duration_s": 10,
    }
    return Fortune(content="\n".join(lines), pattern=pattern)
