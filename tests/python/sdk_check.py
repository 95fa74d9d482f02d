"""Drive a running keyward gateway with the official Anthropic Python SDK.

Usage: sdk_check.py BASE_URL VIRTUAL_KEY REVOKED_KEY
Exits non-zero (with a traceback) on the first failed expectation.
"""
import sys

import anthropic

base_url, key, revoked = sys.argv[1], sys.argv[2], sys.argv[3]
MODEL = "claude-sonnet-4-6"
msgs = [{"role": "user", "content": "Hello through keyward, how are you today?"}]

print("anthropic", anthropic.__version__)
client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)

# messages.create
m = client.messages.create(model=MODEL, max_tokens=64, messages=msgs)
assert m.type == "message" and m.content[0].type == "text", m
assert m.content[0].text.startswith("Hello from the keyward mock upstream"), m.content[0].text
assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m.usage
print("create ok", m.usage.input_tokens, m.usage.output_tokens)

# messages.stream: text and final usage
with client.messages.stream(model=MODEL, max_tokens=64, messages=msgs) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert text.strip() == m.content[0].text, (text, m.content[0].text)
assert final.usage.output_tokens == m.usage.output_tokens, final.usage
assert final.usage.input_tokens == m.usage.input_tokens, final.usage
print("stream ok", final.usage.output_tokens)

# the same key as a bearer token (what newer SDKs and OAuth-style clients send)
bearer = anthropic.Anthropic(base_url=base_url, auth_token=key, api_key=None, max_retries=0)
assert bearer.messages.create(model=MODEL, max_tokens=8, messages=msgs).usage.output_tokens == 8

# count_tokens
ct = client.messages.count_tokens(model=MODEL, messages=msgs)
assert ct.input_tokens == m.usage.input_tokens, ct
print("count_tokens ok", ct.input_tokens)

# models
ids = [x.id for x in client.models.list()]
assert MODEL in ids, ids
assert client.models.retrieve(MODEL).id == MODEL
print("models ok", len(ids))

# batches
b = client.messages.batches.create(
    requests=[{"custom_id": "a", "params": {"model": MODEL, "max_tokens": 16, "messages": msgs}}]
)
assert b.id.startswith("msgbatch_"), b
assert client.messages.batches.retrieve(b.id).id == b.id
assert any(x.id == b.id for x in client.messages.batches.list())
results = list(client.messages.batches.results(b.id))
assert results and results[0].custom_id == "a", results
client.messages.batches.cancel(b.id)
client.messages.batches.delete(b.id)
print("batches ok")

# upstream errors pass through as the SDK's usual exceptions
try:
    client.messages.create(model="mock-error-429", max_tokens=8, messages=msgs)
    raise AssertionError("expected RateLimitError")
except anthropic.RateLimitError as e:
    assert e.response.headers.get("retry-after") == "7", e.response.headers
try:
    client.messages.create(model="mock-error-529", max_tokens=8, messages=msgs)
    raise AssertionError("expected a 529")
except anthropic.APIStatusError as e:
    assert e.status_code == 529, e.status_code
print("upstream errors ok")

# a large request (440,000 characters, over 64 KiB): streamed upstream as it
# arrives, with the same answers (the mock counts ceil(chars / 4) input tokens)
big = [{"role": "user", "content": "All work and no play. " * 20000}]
m = client.messages.create(model=MODEL, max_tokens=8, messages=big)
assert m.usage.input_tokens == 110000, m.usage
with client.messages.stream(model=MODEL, max_tokens=8, messages=big) as stream:
    final = stream.get_final_message()
assert final.usage.input_tokens == 110000, final.usage
assert client.messages.count_tokens(model=MODEL, messages=big).input_tokens == 110000
print("large bodies ok")

# a revoked key raises AuthenticationError
dead = anthropic.Anthropic(base_url=base_url, api_key=revoked, max_retries=0)
try:
    dead.messages.create(model=MODEL, max_tokens=8, messages=msgs)
    raise AssertionError("expected AuthenticationError")
except anthropic.AuthenticationError as e:
    assert e.status_code == 401
print("revoked ok")
print("ALL OK")
