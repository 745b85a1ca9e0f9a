/**
 * The Lua scripts of the Redis broker, each one atomic on one hash slot: every
 * key a script touches shares the `{mq}` tag with the key it is given, so
 * the scripts run unchanged on one Redis and on a Redis Cluster. Times are
 * the calling instance's clock (ms), passed in, so they agree with its timers.
 *
 * Keys under KEYS[1] = `<prefix>{mq}:`:
 *   q            ZSET  random waiters, score = first find (ms): FIFO across instances
 *   qi:<tag>     ZSET  the same, per interest
 *   t:<id>       HASH  a waiter's ticket: node, since, flex (when it takes anyone), tags
 *   nodes        ZSET  live instances, score = when its liveness expires
 *   b:<id>       SET   sessions <id> must never be paired with (blocks, reports)
 *   r:<id>       ZSET  recent partners, score = end of the rematch cool-down
 *   inv          ZSET  open invite codes, score = expiry
 *   i:<code>     HASH  an invite: exp, used, holder, hnode, since
 *   rp:<key>     HASH  reporters of a session id or address digest -> time
 *   rc:<key>     STRING a report cool-down (PX)
 *   m:<id>       HASH  what <id>'s last find answered, if it matched (partner, node, since, tags) or found the
 *                      queue full (full), kept MATCH_RECORD_MS (at most the resume window) for a caller whose
 *                      reply was lost
 *   c:<id>       STRING the instance whose find claimed waiter <id> (its `matched` is on its way), kept
 *                      MATCH_RECORD_MS (at most the resume window) for <id>'s instance finding again after an outage
 */

/** How long a find's match is kept for its caller to ask again after a lost reply (a timeout). */
export const MATCH_RECORD_MS = 30_000;

/** Takes a waiter out of every queue it is in. Shared by the matching scripts. */
const DROP = `
local function drop(w)
  local tags = redis.call('HGET', P .. 't:' .. w, 'tags')
  redis.call('ZREM', P .. 'q', w)
  if tags and tags ~= '' then
    for tag in string.gmatch(tags, '[^\\n]+') do redis.call('ZREM', P .. 'qi:' .. tag, w) end
  end
  redis.call('DEL', P .. 't:' .. w)
end
`;

/**
 * find(id, node, since, flex, now, maxLen, scan, ttl, mode, tags...): pairs the
 * waiter with the longest-waiting compatible one (a shared interest first;
 * anyone flexible once it is flexible itself), skipping waiters whose instance
 * is dead (and removing them), or queues it. Returns
 * {'matched', partner, partnerNode, partnerSince, partnerTags} | {'queued', retryAt or -1} | {'full'} | {'gone'}.
 * Calling it again for a waiter first takes the old ticket out; a retry (`mode` 1) of a waiter that is no
 * longer queued (someone else's find took it) answers 'gone' and changes nothing. `mode` 2 (3 for a
 * retry) is the same call again after its reply was lost (a command timeout: the script may have run, and claimed a
 * partner that only this caller can announce): it answers what that call answered if it matched or found the
 * queue full, 'gone' if it queued the waiter and someone has claimed it since, and otherwise finds as usual.
 * `mode` 4 is a find for a waiter whose instance was cut off from Redis and is back: if a live instance claimed it
 * meanwhile (c:<id>), that match is being sent again until heard, so it answers 'gone' and changes nothing; with no
 * ticket and no claim (Redis restarted empty, or it never reached Redis) it finds as usual.
 */
export const FIND = `
local P = KEYS[1]
local id, node = ARGV[1], ARGV[2]
local since, flex, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local maxLen, scan, ttl = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
-- mode: 0 a find, 1 a retry (its own timer), 2 or 3 either of those again after its reply was lost, 4 a find after
-- the caller's outage.
local mode = tonumber(ARGV[9])
local tags = {}
for i = 10, #ARGV do tags[#tags + 1] = ARGV[i] end
${DROP}
local record = P .. 'm:' .. id
-- What this call answers, kept for the same call asked again after its reply was lost.
local function remember(...)
  redis.call('HSET', record, ...)
  redis.call('PEXPIRE', record, math.min(ttl, ${MATCH_RECORD_MS}))
end
local function alive(n)
  local e = redis.call('ZSCORE', P .. 'nodes', n)
  return e and tonumber(e) > now
end
local claim = P .. 'c:' .. id
local ticket = redis.call('EXISTS', P .. 't:' .. id) == 1
-- Claimed while its instance could not hear: the claim's maker sends the match again until it is heard.
if mode == 4 and not ticket then
  local by = redis.call('GET', claim)
  if by and alive(by) then return {'gone'} end
end
local last = (mode == 2 or mode == 3) and redis.call('HMGET', record, 'partner', 'node', 'since', 'tags', 'full')
-- Only the call just before an again may answer it: an older answer is history.
redis.call('DEL', record)
if last and last[1] then return {'matched', last[1], last[2], last[3], last[4]} end
if last and last[5] then return {'full'} end
-- A retry is for a waiter still waiting: one taken by someone else's find meanwhile is not queued again. Nor is
-- one asked again: the lost call ran first (one connection, in order), so no ticket means it queued the waiter and
-- someone has claimed it since, and that match is announced by its maker; queued again, it would be paired twice.
if (mode == 1 or mode == 2 or mode == 3) and not ticket then return {'gone'} end
drop(id)
-- Waiting afresh (or matched now): any earlier claim on it is history.
redis.call('DEL', claim)
local function from(a, b)
  if redis.call('SISMEMBER', P .. 'b:' .. a, b) == 1 or redis.call('SISMEMBER', P .. 'b:' .. b, a) == 1 then
    return -1
  end
  local x = tonumber(redis.call('ZSCORE', P .. 'r:' .. a, b) or '0')
  local y = tonumber(redis.call('ZSCORE', P .. 'r:' .. b, a) or '0')
  return math.max(x, y)
end
local best, bestScore, retry = nil, nil, nil
local function consider(queue, needFlex)
  local c = redis.call('ZRANGE', queue, 0, scan - 1, 'WITHSCORES')
  for i = 1, #c, 2 do
    local w, score = c[i], tonumber(c[i + 1])
    if bestScore and score >= bestScore then return end
    local tk = redis.call('HMGET', P .. 't:' .. w, 'node', 'flex')
    if not tk[1] or not alive(tk[1]) then
      drop(w)
      -- A ticket whose TTL ran out no longer names its tags, so drop() cannot take it out of this queue.
      redis.call('ZREM', queue, w)
    elseif needFlex and tonumber(tk[2]) > now then
      -- Not flexible yet (by this caller's clock): look again when it is, or two waiters could wait for good.
      retry = math.min(retry or tonumber(tk[2]), tonumber(tk[2]))
    else
      local f = from(id, w)
      if f >= 0 and f <= now then
        best, bestScore = w, score
        return
      elseif f > now then
        retry = math.min(retry or f, f)
      end
    end
  end
end
for _, tag in ipairs(tags) do consider(P .. 'qi:' .. tag, false) end
if not best and flex <= now then consider(P .. 'q', true) end
if best then
  local tk = redis.call('HMGET', P .. 't:' .. best, 'node', 'since', 'tags')
  drop(best)
  redis.call('SET', P .. 'c:' .. best, node, 'PX', math.min(ttl, ${MATCH_RECORD_MS}))
  remember('partner', best, 'node', tk[1], 'since', tk[2], 'tags', tk[3] or '')
  return {'matched', best, tk[1], tk[2], tk[3] or ''}
end
if redis.call('ZCARD', P .. 'q') >= maxLen then
  remember('full', '1')
  return {'full'}
end
local t = P .. 't:' .. id
redis.call('HSET', t, 'node', node, 'since', since, 'flex', flex, 'tags', table.concat(tags, '\\n'))
redis.call('PEXPIRE', t, ttl)
redis.call('ZADD', P .. 'q', since, id)
for _, tag in ipairs(tags) do redis.call('ZADD', P .. 'qi:' .. tag, since, id) end
if flex > now then retry = math.min(retry or flex, flex) end
return {'queued', tostring(retry or -1)}
`;

/** cancel(id) */
export const CANCEL = `
local P = KEYS[1]
${DROP}
drop(ARGV[1])
return 1
`;

/** pair(a, b, until, ttl): a rematch cool-down, or (until = -1) a block, both ways. */
export const REMEMBER = `
local P = KEYS[1]
local a, b, untilMs, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
for _, p in ipairs({{a, b}, {b, a}}) do
  if untilMs < 0 then
    redis.call('SADD', P .. 'b:' .. p[1], p[2])
    redis.call('PEXPIRE', P .. 'b:' .. p[1], ttl)
  else
    redis.call('ZADD', P .. 'r:' .. p[1], untilMs, p[2])
    redis.call('ZREMRANGEBYSCORE', P .. 'r:' .. p[1], '-inf', ARGV[5])
    redis.call('PEXPIRE', P .. 'r:' .. p[1], ttl)
  end
end
return 1
`;

/**
 * heartbeat(node, now, expiresAt): this instance is alive; returns the live instances, the open invites, and since
 * when this Redis has kept the liveness record. A Redis that restarted (or lost the record) knows no instance until
 * each has beaten once: an instance missing from a record younger than the liveness bound is not dead, only not yet
 * back, and the relay must not end its chats for it.
 */
export const HEARTBEAT = `
local P = KEYS[1]
local now = tonumber(ARGV[2])
local since = tonumber(redis.call('GET', P .. 'nodes-since'))
if since == nil or redis.call('EXISTS', P .. 'nodes') == 0 then
  since = now
  redis.call('SET', P .. 'nodes-since', now)
end
redis.call('ZADD', P .. 'nodes', tonumber(ARGV[3]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', P .. 'nodes', '-inf', now)
redis.call('PEXPIRE', P .. 'nodes', 60000)
redis.call('PEXPIRE', P .. 'nodes-since', 60000)
redis.call('ZREMRANGEBYSCORE', P .. 'inv', '-inf', now)
return {redis.call('ZRANGE', P .. 'nodes', 0, -1), redis.call('ZCARD', P .. 'inv'), since}
`;

/** leave(node): this instance stops; it is dead to matching at once. */
export const LEAVE = `
redis.call('ZREM', KEYS[1] .. 'nodes', ARGV[1])
return 1
`;

/** create(code, exp, now, max, keepMs): 1 made, 0 too many open, -1 code taken. */
export const INVITE_CREATE = `
local P = KEYS[1]
local code, exp, now, max, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', P .. 'inv', '-inf', now)
if redis.call('ZCARD', P .. 'inv') >= max then return 0 end
local k = P .. 'i:' .. code
if redis.call('EXISTS', k) == 1 then return -1 end
redis.call('HSET', k, 'exp', exp, 'used', 0, 'holder', '', 'hnode', '', 'since', 0)
redis.call('PEXPIRE', k, keep)
redis.call('ZADD', P .. 'inv', exp, code)
redis.call('PEXPIRE', P .. 'inv', keep)
return 1
`;

/** join(code, id, node, now): {'wait'} | {'pair', holder, holderNode, waitedMs} | {'unknown'|'used'|'expired'}. */
export const INVITE_JOIN = `
local P = KEYS[1]
local code, id, node, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local k = P .. 'i:' .. code
local h = redis.call('HMGET', k, 'exp', 'used', 'holder', 'hnode', 'since')
if not h[1] then return {'unknown'} end
if h[2] == '1' then return {'used'} end
if tonumber(h[1]) <= now then return {'expired'} end
if h[3] == '' or h[3] == id then
  if h[3] == '' then redis.call('HSET', k, 'since', now) end
  redis.call('HSET', k, 'holder', id, 'hnode', node)
  return {'wait'}
end
redis.call('HSET', k, 'used', 1, 'holder', '', 'hnode', '')
redis.call('ZREM', P .. 'inv', code)
return {'pair', h[3], h[4], tostring(now - tonumber(h[5]))}
`;

/** release(code, id): the holder stops waiting; the code stays open. */
export const INVITE_RELEASE = `
local k = KEYS[1] .. 'i:' .. ARGV[1]
if redis.call('HGET', k, 'holder') == ARGV[2] then redis.call('HSET', k, 'holder', '', 'hnode', '') end
return 1
`;

/** report(reporter, now, windowMs, threshold, cooldownMs, keys...): one report against each key. */
export const REPORT = `
local P = KEYS[1]
local reporter, now, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local threshold, cooldown = tonumber(ARGV[4]), tonumber(ARGV[5])
for i = 6, #ARGV do
  local k = P .. 'rp:' .. ARGV[i]
  local all = redis.call('HGETALL', k)
  for j = 1, #all, 2 do
    if now - tonumber(all[j + 1]) > window then redis.call('HDEL', k, all[j]) end
  end
  redis.call('HSET', k, reporter, now)
  redis.call('PEXPIRE', k, window)
  if redis.call('HLEN', k) >= threshold then
    if cooldown > 0 then redis.call('SET', P .. 'rc:' .. ARGV[i], 1, 'PX', cooldown) end
    redis.call('DEL', k)
  end
end
return 1
`;

/** cooldown(keys...): ms left on the longest report cool-down among the keys. */
export const COOLDOWN = `
local left = 0
for i = 1, #ARGV do
  local t = redis.call('PTTL', KEYS[1] .. 'rc:' .. ARGV[i])
  if t > left then left = t end
end
return left
`;

/** touch(ttl, ids...): the sessions are still alive here: their tickets, blocks and pair history live on. */
export const TOUCH = `
local P = KEYS[1]
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  for _, kind in ipairs({'t:', 'b:', 'r:'}) do redis.call('PEXPIRE', P .. kind .. ARGV[i], ttl) end
end
return 1
`;

/** forget(id): a session ended: its traces go now, not when their TTL runs out. */
export const FORGET = `
local P = KEYS[1]
${DROP}
drop(ARGV[1])
redis.call('DEL', P .. 'b:' .. ARGV[1], P .. 'r:' .. ARGV[1], P .. 'm:' .. ARGV[1], P .. 'c:' .. ARGV[1])
return 1
`;
