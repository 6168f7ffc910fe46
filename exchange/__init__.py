"""The exchange service: authorised, audited lookups of the base libraries for department counters (API and pages).

共享交换服务：部门窗口按授权、用途与办件编号查询基础库，每次调用均先审计落盘再答复。
"""
