"""The job's Redis scripts: each step on the queue is one atomic round trip."""

# KEYS: order, seq, posts, queue, failed, counts
# ARGV: retry ("1" for failures to try again), then id, post, images for each post.
# A post id queued once is never queued again; with retry, a post whose last
# result has a failure is queued again unless it is queued or leased.
FEED = """
local retry = ARGV[1] == '1'
local count = (#ARGV - 1) / 3
local seq = redis.call('INCRBY', KEYS[2], count) - count
local added, images, retried = 0, 0, 0
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  seq = seq + 1
  local take = false
  if redis.call('ZADD', KEYS[1], 'NX', seq, id) == 1 then
    take = true
    added = added + 1
    images = images + tonumber(ARGV[i + 2])
  elseif retry and redis.call('SISMEMBER', KEYS[5], id) == 1
      and redis.call('HEXISTS', KEYS[3], id) == 0 then
    take = true
    retried = retried + 1
  end
  if take then
    redis.call('HSET', KEYS[3], id, ARGV[i + 1])
    redis.call('RPUSH', KEYS[4], id)
  end
end
redis.call('HINCRBY', KEYS[6], 'posts/total', added)
redis.call('HINCRBY', KEYS[6], 'images/total', images)
return {added, images, retried}
"""

# KEYS: queue, posts, leases, workers, index
# ARGV: worker, how many, the worker's deadline (ms)
# Returns each post taken, then what the index holds for each of its images'
# keys (nil: nothing): the lookups its images would make, made in this round trip.
# A post's body begins with its images' keys ({"keys":["<hex>",...],...}), read
# here without decoding the rest; one queued by an earlier version has none.
TAKE = """
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
local ids = redis.call('LPOP', KEYS[1], tonumber(ARGV[2]))
if not ids then return {} end
local taken = {}
for _, id in ipairs(ids) do
  local post = redis.call('HGET', KEYS[2], id)
  if post then
    redis.call('HSET', KEYS[3], id, ARGV[1])
    local image_keys, indexed = {}, {}
    for key in string.gmatch(string.match(post, '^{"keys":%[([^%]]*)%]') or '', '%x+') do
      image_keys[#image_keys + 1] = key
    end
    for i = 1, #image_keys, 1000 do  -- within Lua's limit on unpacked values
      local last = math.min(i + 999, #image_keys)
      for _, found in ipairs(redis.call('HMGET', KEYS[5], unpack(image_keys, i, last))) do
        indexed[#indexed + 1] = found
      end
    end
    taken[#taken + 1] = post
    taken[#taken + 1] = indexed
  end
end
return taken
"""

# KEYS: workers, leases, queue
# ARGV: now (ms)
# Posts leased by workers whose deadline has passed go back to the queue's front.
REAP = """
local alive = {}
for _, worker in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')) do
  alive[worker] = true
end
local leases = redis.call('HGETALL', KEYS[2])
local returned = 0
for i = 1, #leases, 2 do
  if not alive[leases[i + 1]] then
    redis.call('HDEL', KEYS[2], leases[i])
    redis.call('LPUSH', KEYS[3], leases[i])
    returned = returned + 1
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return returned
"""

# KEYS: leases, posts, queue, results, failed, counts, version
# ARGV: worker, then for each post: id, result, failed ("1"; "0": no longer;
# "": never), n, and n pairs of counter and change. A post another worker has
# taken again is left to that worker's ack; one put back in the queue
# meanwhile is taken out. The counters change once a call, by their sums.
ACK = """
local worker = ARGV[1]
local i, acked, changes, acking, ids, results = 2, 0, {}, {}, {}, {}
while i <= #ARGV do
  local id, failed, n = ARGV[i], ARGV[i + 2], tonumber(ARGV[i + 3])
  local owner = redis.call('HGET', KEYS[1], id)
  local mine = owner == worker
  if not owner and redis.call('HEXISTS', KEYS[2], id) == 1 then
    redis.call('LREM', KEYS[3], 1, id)
    mine = true
  end
  if mine and not acking[id] then  -- a post twice in a call: its first result
    acking[id] = true
    ids[#ids + 1] = id
    results[#results + 1] = id
    results[#results + 1] = ARGV[i + 1]
    if failed == '1' then
      redis.call('SADD', KEYS[5], id)
    elseif failed == '0' then
      redis.call('SREM', KEYS[5], id)
    end
    for j = i + 4, i + 2 + 2 * n, 2 do
      changes[ARGV[j]] = (changes[ARGV[j]] or 0) + tonumber(ARGV[j + 1])
    end
    acked = acked + 1
  end
  i = i + 4 + 2 * n
end
-- One call per command, not per post (in parts: Lua unpacks at most about 8,000 values)
for first = 1, #ids, 1000 do
  local last = math.min(first + 999, #ids)
  redis.call('HDEL', KEYS[1], unpack(ids, first, last))
  redis.call('HDEL', KEYS[2], unpack(ids, first, last))
  redis.call('HSET', KEYS[4], unpack(results, 2 * first - 1, 2 * last))
end
for counter, change in pairs(changes) do
  if change ~= 0 then redis.call('HINCRBY', KEYS[6], counter, change) end
end
if acked > 0 then redis.call('INCR', KEYS[7]) end
return acked
"""

# KEYS: leases, queue
# ARGV: worker, ids: this worker's posts back to the queue's front, untouched.
RELEASE = """
local released = 0
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('LPUSH', KEYS[2], ARGV[i])
    released = released + 1
  end
end
return released
"""

# KEYS: index, contents, workers
# ARGV: worker, now (ms), the claim's deadline (ms), then each content's sha256
# For each: the image already holding these bytes; else "1" if they are this
# worker's to store (it now holds the claim), "0" if another live worker is
# storing them. A content's field is the image key whose image holds it, or
# while it is being stored its claim, "!<deadline>!<worker>": the claim of a
# worker that stopped beating, or past its deadline, is taken over.
CLAIM = """
local worker, now = ARGV[1], tonumber(ARGV[2])
local claim = '!' .. ARGV[3] .. '!' .. worker
local replies = {}
for i = 4, #ARGV do
  local sha, reply = ARGV[i], '1'
  local held = redis.call('HGET', KEYS[2], sha)
  if held and string.sub(held, 1, 1) == '!' then
    local deadline, owner = string.match(held, '^!(%d+)!(.*)$')
    local beat = redis.call('ZSCORE', KEYS[3], owner)
    if owner ~= worker and tonumber(deadline) >= now and beat and tonumber(beat) >= now then
      reply = '0'
    end
  elseif held then
    local image = redis.call('HGET', KEYS[1], held)
    if image and string.find(image, sha, 1, true) then reply = image end
  end
  if reply == '1' then redis.call('HSET', KEYS[2], sha, claim) end
  replies[#replies + 1] = reply
end
return replies
"""

# KEYS: contents
# ARGV: worker, sha256: this worker's claim on these bytes, given up
UNCLAIM = """
local held = redis.call('HGET', KEYS[1], ARGV[2])
if held and string.match(held, '^!%d+!(.*)$') == ARGV[1] then
  redis.call('HDEL', KEYS[1], ARGV[2])
end
"""

# KEYS: allotments (of one host), workers
# ARGV: worker, wanted, in flight now, ceiling, now (ms)
# Returns the worker's share: how many it may have in flight. The host's
# ceiling is shared max-min fairly (in the order of their wants, then names)
# between the live workers that want some; a share is at most what the others'
# allotments leave free. A worker's allotment is its share, or what it still
# has in flight above it, so the allotments never add up to more than the
# ceiling, and a share that shrinks frees its room as requests end.
ALLOT = """
local me, want = ARGV[1], tonumber(ARGV[2])
local in_flight, ceiling, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local fields = redis.call('HGETALL', KEYS[1])
local others, wants, live = 0, {{want, me}}, {}
for i = 1, #fields, 2 do
  local kind, worker = string.sub(fields[i], 1, 1), string.sub(fields[i], 3)
  if worker ~= me then
    if live[worker] == nil then
      local deadline = redis.call('ZSCORE', KEYS[2], worker)
      live[worker] = deadline ~= false and tonumber(deadline) >= now
    end
    if not live[worker] then
      redis.call('HDEL', KEYS[1], fields[i])
    elseif kind == 'a' then
      others = others + tonumber(fields[i + 1])
    elseif tonumber(fields[i + 1]) > 0 then
      wants[#wants + 1] = {tonumber(fields[i + 1]), worker}
    end
  end
end
table.sort(wants, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
local left, fair = ceiling, 0
for k, entry in ipairs(wants) do
  local share = math.min(entry[1], math.ceil(left / (#wants - k + 1)))
  if entry[2] == me then fair = share end
  left = left - share
end
local share = math.max(0, math.min(fair, ceiling - others))
redis.call('HSET', KEYS[1], 'a:' .. me, math.max(in_flight, share), 'w:' .. me, want)
redis.call('PEXPIRE', KEYS[1], 3600000)
return share
"""
