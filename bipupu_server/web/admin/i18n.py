"""The admin pages' one catalogue: English message ids, their Chinese, chosen by Accept-Language."""

from __future__ import annotations

from contextvars import ContextVar

LANGUAGES = ("en", "zh")
language: ContextVar[str] = ContextVar("admin_language", default="en")

ZH: dict[str, str] = {
    "Bipupu admin": "Bipupu 管理",
    "Dashboard": "概览",
    "Users": "用户",
    "Audit log": "审计日志",
    "Log in": "登录",
    "Log out": "退出登录",
    "Username": "用户名",
    "Password": "密码",
    "Nickname": "昵称",
    "Wrong username or password.": "用户名或密码错误。",
    "This account is not an admin.": "该账号不是管理员。",
    "This account is deactivated.": "该账号已停用。",
    "Too many attempts; try again in a while.": "尝试次数过多，请稍后再试。",
    "Cards today": "今日卡片",
    "Live sockets": "在线连接",
    "Subscribers": "订阅者",
    "Service": "服务",
    "Last broadcast": "最近一次广播",
    "never": "从未",
    "BLE relay": "蓝牙中继",
    "off": "关闭",
    "unavailable": "不可用",
    "searching": "正在寻找设备",
    "connecting": "正在连接",
    "connected": "已连接",
    "Database size": "数据库大小",
    "Version": "版本",
    "Uptime": "运行时间",
    "Search by username, nickname or bipupu_id": "按用户名、昵称或 bipupu_id 搜索",
    "Search": "搜索",
    "Next page": "下一页",
    "No users found.": "没有找到用户。",
    "Created": "创建于",
    "Last seen": "最近活动",
    "Active": "启用",
    "Deactivated": "已停用",
    "Admin": "管理员",
    "yes": "是",
    "no": "否",
    "Cards sent": "发出的卡片",
    "Cards received": "收到的卡片",
    "Sessions": "登录会话",
    "Kind": "类型",
    "Deactivate": "停用",
    "Reactivate": "启用",
    "Reset password": "重置密码",
    "Sign out everywhere": "全部退出登录",
    "Grant admin": "设为管理员",
    "Revoke admin": "取消管理员",
    "Create user": "创建用户",
    "Create": "创建",
    "make an admin": "设为管理员",
    "New password for %(name)s, shown only this once:": "%(name)s 的新密码（只显示这一次）：",
    "Back to the user": "返回用户页",
    "Confirm with your password": "请输入密码确认",
    "This action needs your password again (your login is older than a few minutes).":
        "此操作需要再次输入密码（登录已超过几分钟）。",
    "Confirm": "确认",
    "When": "时间",
    "Who": "操作者",
    "What": "操作",
    "Whom": "对象",
    "From": "来源地址",
    "Nothing yet.": "暂无记录。",
    "Older": "更早",
    "Not found": "未找到",
    "Forbidden": "禁止访问",
    "Something went wrong": "出错了",
    "Back to the dashboard": "返回概览",
    "Done.": "已完成。",
    "This form has expired; reload the page and try again.": "表单已过期，请刷新页面后重试。",
    # services
    "Messages": "消息",
    "Services": "服务",
    "Relay": "蓝牙中继",
    "Backup": "备份",
    "Detail": "详情",
    "Send time": "发送时间",
    "Create service": "创建服务",
    "Service id": "服务 ID",
    "lowercase dotted words, e.g. weather.daily": "小写字母，以点分隔，例如 weather.daily",
    "Name": "名称",
    "Description": "简介",
    "daily, HH:MM": "每天，时:分",
    "Daily card": "每日卡片",
    "sent to every subscriber at the send time; leave empty to send nothing daily":
        "每天在发送时间发给所有订阅者；留空则不每日发送",
    "everyone": "所有人",
    "custom": "自定义",
    "fortune": "运势",
    "notice": "公告",
    "Broadcast sent to %(n)s users.": "广播已发送给 %(n)s 位用户。",
    "Broadcast now": "立即广播",
    "This service is switched off; switch it on to broadcast.": "该服务已关闭；开启后才能广播。",
    "Goes to every active user: %(n)s.": "发送给所有启用的用户：%(n)s 位。",
    "Goes to the active subscribers: %(n)s.": "发送给启用的订阅者：%(n)s 位。",
    "Card": "卡片内容",
    "LED colour": "灯光颜色",
    "Effect": "灯效",
    "Font": "字体",
    "Seconds on screen": "显示秒数",
    "Sound": "提示音",
    "optional": "可选",
    "Screensaver": "屏保",
    "vibrate": "振动",
    "Your card, as the pupu device shows it": "你的卡片在 pupu 设备上的样子",
    "Preview": "预览",
    "Yes, send this to every active user (%(n)s).": "是的，发送给所有启用的用户（%(n)s 位）。",
    "This goes to every active user: tick the box to confirm.": "这会发给所有启用的用户：请勾选确认框。",
    "Settings": "设置",
    "Command words: what a card to the service may say, separated by commas.": "指令词：发给该服务的卡片可以写的词，用逗号分隔。",
    "subscribe": "订阅",
    "unsubscribe": "退订",
    "help": "帮助",
    "active": "启用",
    "Save": "保存",
    "A notice service reaches every active user; nobody subscribes to it.": "公告服务发给所有启用的用户，无需订阅。",
    "Since": "订阅于",
    "No subscribers yet.": "还没有订阅者。",
    "steady": "常亮",
    "blink": "闪烁",
    "breathe": "呼吸",
    "flash": "爆闪",
    "rainbow": "彩虹",
    "default": "默认",
    "neon": "霓虹",
    "pixel": "像素",
    "serif": "衬线",
    "handwriting": "手写",
    # records (messages, relay)
    "Sender": "发送者",
    "Receiver": "接收者",
    "Type": "类型",
    "Any type": "任意类型",
    "From day": "起始日期",
    "To day": "截止日期",
    "Days are counted in the server's time zone, %(zone)s.": "日期按服务器时区（%(zone)s）计算。",
    "Filter": "筛选",
    "Clear the filter": "清除筛选",
    "Content": "内容",
    "Pattern": "显示效果",
    "dropped": "已丢弃",
    "Silently dropped: the receiver never saw it.": "已被静默丢弃：接收者从未看到。",
    "No messages.": "没有消息。",
    "The sender must be a bipupu_id (8 digits) or a service id such as cosmic.fortune.":
        "发送者必须是 bipupu_id（8 位数字）或服务 ID，例如 cosmic.fortune。",
    "The receiver must be a bipupu_id (8 digits) or a service id such as cosmic.fortune.":
        "接收者必须是 bipupu_id（8 位数字）或服务 ID，例如 cosmic.fortune。",
    "The type must be USER_POSTCARD, VOICE_TRANSCRIPT or COSMIC_BROADCAST.":
        "类型必须是 USER_POSTCARD、VOICE_TRANSCRIPT 或 COSMIC_BROADCAST。",
    "A day is written YYYY-MM-DD, from 1970 on.": "日期格式为 YYYY-MM-DD，且不早于 1970 年。",
    "The first day is after the last.": "起始日期晚于截止日期。",
    "This page link is broken: before must be a message id.": "此分页链接无效：before 必须是消息 ID。",
    "State": "状态",
    "Device": "设备",
    "none": "无",
    "Shows the cards of": "显示谁的卡片",
    "The relay is off. To turn it on, set BIPUPU_BLE_DEVICE (the pupu device's Bluetooth address) and "
    "BIPUPU_BLE_OWNER (the bipupu_id whose cards it shows), then restart the server.":
        "中继已关闭。要开启它，请设置 BIPUPU_BLE_DEVICE（pupu 设备的蓝牙地址）和 BIPUPU_BLE_OWNER"
        "（要显示其卡片的 bipupu_id），然后重启服务器。",
    "Last frames": "最近发送的帧",
    "Message id": "消息 ID",
    "Sequence": "序号",
    "Bytes": "字节数",
    "Acknowledged": "已确认",
    "No frames sent yet.": "还没有发送过帧。",
    "Send test card": "发送测试卡片",
    "Shows a short card on the device, to check that it is in reach.": "在设备上显示一张简短的卡片，检查设备是否在范围内。",
    "The relay is off: no test card was sent.": "中继已关闭：没有发送测试卡片。",
    "The device is not connected (%(state)s): no test card was sent.": "设备未连接（%(state)s）：没有发送测试卡片。",
    "A test card is on its way to the device.": "测试卡片正在发往设备。",
    "Found as": "找到的设备",
    "Shown since start": "启动以来已显示",
    "Skipped since start": "启动以来已跳过",
    "Waiting": "等待显示",
    "Last acknowledged card": "最近确认的卡片",
    "Frame": "帧",
    "Outcome": "结果",
    "acknowledged": "已确认",
    "no_answer": "无应答",
    "bad_crc": "校验错误",
    "busy": "设备忙",
    # backup
    "A backup is a consistent copy of the whole SQLite database, taken while the server keeps running: accounts "
    "with their password hashes, contacts, services and every stored card. Keep it as private as the server itself.":
        "备份是整个 SQLite 数据库的一致副本，在服务器运行时制作：包括账号及其密码哈希、联系人、服务和所有已存储的卡片。"
        "请像保护服务器本身一样妥善保管。",
    "Download backup": "下载备份",
    "The copy is made now, checked with PRAGMA integrity_check, and sent as one .db file. If your login is older "
    "than a few minutes, you are asked for your password again.":
        "副本会立即生成，经 PRAGMA integrity_check 校验后作为一个 .db 文件发送。如果登录已超过几分钟，需要再次输入密码。",
    "Restore": "恢复",
    "Stop the server, put the file in place of bipupu.db in the data dir, remove bipupu.db-wal and bipupu.db-shm, "
    "then start the server again:":
        "停止服务器，用该文件替换数据目录中的 bipupu.db，删除 bipupu.db-wal 和 bipupu.db-shm，然后重新启动服务器：",
    "Keep a copy of the secret_key file in the data dir (or of BIPUPU_SECRET_KEY) as well; it is not in the backup. "
    "Without it every token is invalid after a restore, and users simply log in again.":
        "请同时保存数据目录中的 secret_key 文件（或 BIPUPU_SECRET_KEY）的副本，它不包含在备份中。"
        "没有它，恢复后所有令牌都会失效，用户重新登录即可。",
    "Restore with the same or a newer version of the server: an older database is migrated at start-up, one "
    "written by a newer version is refused.":
        "请使用相同或更新版本的服务器恢复：较旧的数据库会在启动时迁移，较新版本写入的数据库会被拒绝。",
    "The backup could not be made: %(reason)s": "无法生成备份：%(reason)s",
}

CATALOGUES = {"en": {}, "zh": ZH}


def choose(accept_language: str | None) -> str:
    """The first of LANGUAGES the header asks for (by q order), else English."""
    if not accept_language:
        return "en"
    wanted: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        wanted.append((-q, position, tag.strip().lower()))
    for negative_q, _, tag in sorted(wanted):
        if negative_q < 0:
            primary = tag.split("-")[0]
            if primary in LANGUAGES:
                return primary
    return "en"


def gettext(message: str) -> str:
    return CATALOGUES[language.get()].get(message, message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return gettext(singular if n == 1 else plural)
