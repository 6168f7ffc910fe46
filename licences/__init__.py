"""电子证照: sealing, verification, life cycle, expiry reminders and 亮证 presentation tokens of e-licences.

Modules: keys (department signing keys, JWKS), canonical (the bytes a seal covers), seal (sealing rows),
verify (integrity and current status, offline exports, QR payloads), lifecycle (revoke, cancel, renew),
reminders (expiry reminders outbox, expiry marking), presentation (short-lived 亮证 tokens), cli (`hub licence`).
"""
