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
