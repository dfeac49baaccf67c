"""Crypt4GH (GA4GH v1) in pure code: headers, payloads and key files.

Pure: imports only the standard library and `cryptography`; no storage, no HTTP.
"""
