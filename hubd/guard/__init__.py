"""What a caller may do and cost, checked on the way in: API keys and who the caller is (auth), rate limits
per caller with their token buckets (ratelimit, buckets), and bounds on bodies, time and names (limits).

May import: the core modules (settings, errors, keys) and `shared` only, so every other room may use it.
"""
