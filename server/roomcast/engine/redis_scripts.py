"""Lua scripts of the Redis engine; each runs atomically on the shard that owns the channel.

Times come from Redis (``TIME``) or are relative (``PEXPIRE``), never from a node's
clock, so skewed nodes still agree on what expired.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Script:
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


#: Append to the stream, assign the next offset and publish, in one step, so a
#: publication has its gap-free offset before any node can see it; a node that
#: misses one on pub/sub finds the hole and reads the stream.
#: KEYS: stream, meta, [idempotency key]
#: ARGV: body, pub/sub channel, size (0 = no history), ttl ms, meta ttl ms,
#:       epoch to use if the stream is new, publish command, idempotency ttl ms,
#:       prefix of the pub/sub frame ('' or the publisher's time, see redis_codec)
#: returns {offset, epoch}; offset -1 means a duplicate, epoch then holds "offset:epoch".
PUBLISH = Script.of("""
local idem = KEYS[3]
if idem then
  local seen = redis.call('get', idem)
  if seen then return {-1, seen} end
end
local top = 0
local epoch = ''
if ARGV[3] ~= '0' then
  local meta = redis.call('hmget', KEYS[2], 'e', 's')
  epoch = meta[1]
  if not epoch then
    epoch = ARGV[6]
    redis.call('del', KEYS[1])
    redis.call('hset', KEYS[2], 'e', epoch)
  else
    top = tonumber(meta[2]) or 0
  end
  top = top + 1
  redis.call('hset', KEYS[2], 's', top)
  redis.call('xadd', KEYS[1], 'MAXLEN', ARGV[3], top .. '-0', 'd', ARGV[1])
  redis.call('pexpire', KEYS[1], ARGV[4])
  redis.call('pexpire', KEYS[2], ARGV[5])
end
redis.call(ARGV[7], ARGV[2], ARGV[9] .. 'p' .. top .. ':' .. epoch .. ':' .. ARGV[1])
if idem then
  redis.call('set', idem, top .. ':' .. epoch, 'PX', ARGV[8])
end
return {top, epoch}
""")

#: Read the stream position and a range of it.
#: KEYS: stream, meta
#: ARGV: epoch to start if there is no stream ('' = do not create), meta ttl ms,
#:       range start, range end, count (0 = position only, -1 = all), reverse ('1')
#: returns {top, epoch or false, entries}
HISTORY = Script.of("""
local meta = redis.call('hmget', KEYS[2], 'e', 's')
local epoch = meta[1]
local top = tonumber(meta[2]) or 0
if not epoch then
  if ARGV[1] == '' then return {0, false, {}} end
  epoch = ARGV[1]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch)
  redis.call('pexpire', KEYS[2], ARGV[2])
  return {0, epoch, {}}
end
if ARGV[5] == '0' then return {top, epoch, {}} end
local entries
local cmd = 'xrange'
if ARGV[6] == '1' then cmd = 'xrevrange' end
if ARGV[5] == '-1' then
  entries = redis.call(cmd, KEYS[1], ARGV[3], ARGV[4])
else
  entries = redis.call(cmd, KEYS[1], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
end
return {top, epoch, entries}
""")

_EXPIRE_OLD = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('zrangebyscore', KEYS[2], '-inf', now)
for i = 1, #expired, 1000 do
  redis.call('hdel', KEYS[1], unpack(expired, i, math.min(i + 999, #expired)))
end
if #expired > 0 then redis.call('zremrangebyscore', KEYS[2], '-inf', now) end
"""

#: Add or refresh one member (a present client, a live node) until Redis time + ttl.
#: KEYS: data hash, expiry sorted set; ARGV: member, value, ttl ms
ADD_MEMBER = Script.of(
    _EXPIRE_OLD
    + """
redis.call('zadd', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('pexpire', KEYS[1], ARGV[3])
redis.call('pexpire', KEYS[2], ARGV[3])
return 1
"""
)

#: The live members after dropping the expired ones; KEYS as ADD_MEMBER.
LIVE_MEMBERS = Script.of(
    _EXPIRE_OLD
    + """
return redis.call('hgetall', KEYS[1])
"""
)

SCRIPTS = (PUBLISH, HISTORY, ADD_MEMBER, LIVE_MEMBERS)
