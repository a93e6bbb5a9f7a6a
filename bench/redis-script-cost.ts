/**
 * @module bench/redis-script-cost
 *
 * What the counter script costs Redis, in instructions, which unlike µs do not move with the
 * machine's load: each scenario runs N calls against a private `redis-server` started under
 * `valgrind --tool=callgrind` on a free port, and the instructions of a run of N trivial
 * scripts with no keys are subtracted. A call's instructions include Redis reading the
 * command and writing the reply (the kernel's part is not counted).
 *
 * Scenarios (tollbooth's on the HTTP benchmark's key: a per-minute rate limit, a daily quota
 * and a credit reservation, the previous request's settle carried in the same call, and the
 * admission's identity, as `remoteConsume` sends it: its credit hold, kept longer than a
 * record, stands for the admission's record):
 * - `tollbooth, 1 in flight`: each call releases the hold the previous one took
 * - `tollbooth, 32 in flight` and `100 in flight`: 32 or 100 reservations live on the
 *   account's credit counter (its holds are read and written whole, so a call's cost grows
 *   with them: what an account with many long requests in flight pays)
 * - `the peers' job: a rate limit alone`: a key with a per-minute rate limit and nothing else,
 *   as tollbooth sends it (its admission record appended to its account's list of the second:
 *   no hold stands for it), so
 *   the job compares one for one with the next
 * - `fixed window (the peers' job)`: INCR, PTTL and a PEXPIRE when new — what the peer
 *   limiters' Redis stores do per request
 * - two floors of a layout tollbooth does not have (bench/NOTES.md, session 10): every
 *   counter of an account in one string of 12 packed doubles, read by one GET, unpacked and
 *   packed once each and written back with KEEPTTL, with no counting rule at all; then the
 *   same plus the admission's record as its own `SET … PX`. What issue 23's ≤ 3× the fixed
 *   window leaves for the counting rules.
 * - a third floor: the three rules themselves in that one string, pared down (see `RULES`):
 *   what the rules cost in Lua in the best layout, before the features tollbooth's counters
 *   have and it leaves out.
 *
 * Usage: `npx tsx bench/redis-script-cost.ts [calls=1000]` (needs valgrind and redis-server;
 * prints nothing but a note without them). Prints a table and a JSON line. Figures move by
 * about ±500 between runs (the server's timers, which run for as long as valgrind takes, once a
 * second: ±1,500 at Redis's default of ten); the script's own part, without that noise, is
 * `luaCallFunction`'s inclusive cost in `callgrind_annotate --inclusive=yes` of a run's output.
 *
 * Last figures (2026-12-06, 300 calls; bench/NOTES.md "session 22"): 1 in flight 168,867,
 * 32 in flight 207,960, 100 in flight 274,283, a rate limit alone 45,208, the fixed window
 * 16,135 (2.80×); session 21: 170,762 / 209,788 / 276,255, 62,914 (3.87×); on c20f033, before
 * session 12's changes to the Lua: 200,042 / 268,888 / 389,664.
 */

import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { consumeCall, settleBatch } from '../adapters/redis/counter-calls.js'
import { CONSUME_FUNCTION, LIBRARY } from '../adapters/redis/scripts.js'
import type { Check, SettleOp } from '../src/internal.js'
import { tools } from './http.js'

const N = Number(process.argv[2] ?? 1000)

const FIXED_WINDOW = `local c = redis.call('INCR', KEYS[1])
local t = redis.call('PTTL', KEYS[1])
if t < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return { c, t }`

/** The floor of a one-string-per-account layout (no counting rule); RECORD: the record's write. */
const ONE_KEY = `local s = redis.call('GET', KEYS[1])
local now, cost = struct.unpack('<dd', ARGV[1])
local a, b, c, d, e, f, g, h, i, j, k, l
if s then a, b, c, d, e, f, g, h, i, j, k, l = struct.unpack('<dddddddddddd', s)
else a, b, c, d, e, f, g, h, i, j, k, l = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 end
a = a + cost
b = now
local t = struct.pack('<dddddddddddd', a, b, c, d, e, f, g, h, i, j, k, l)
if s then redis.call('SET', KEYS[1], t, 'KEEPTTL') else redis.call('SET', KEYS[1], t, 'PX', 86400000) end
RECORD
return 1`

/**
 * The third floor: the scenario's three rules in that one string, written as plainly as Lua
 * allows and with much left out (no rebuild marks, one window bucket, no expiry per counter,
 * no cancel, no TTL that moves): the GCRA level, the window's bucket and the credit holds
 * (their header and text, the carried release cut out and the new hold appended; the hold
 * stands for the record, whose key is passed and not read). Not a counter anyone should use:
 * a bound on what any layout of these rules costs in Lua.
 */
const RULES = `local s = redis.call('GET', KEYS[1])
local now, cost, amt, ttl, rlim, rwin, wlim, bms, span, hlim = struct.unpack('<dddddddddd', ARGV[1])
local rid, id = ARGV[2], ARGV[3]
local gl, gat, wi, wn, used, sum, mn, mx = 0, now, 0, 0, 0, 0, 1/0, -1/0
local body = ''
if s then
  gl, gat, wi, wn, used, sum, mn, mx = struct.unpack('<dddddddd', s)
  body = string.sub(s, 65)
end
if rid ~= '' then
  local a = string.find(body, '\\n#' .. rid .. '\\n', 1, true)
  if a then
    local p = a + #rid + 3
    local q = string.find(body, '\\n', p, true)
    sum = sum - tonumber(string.sub(body, p, q - 1))
    used = used + 1
    local e = string.find(body, '\\n', q + 1, true)
    if e then body = string.sub(body, 1, a - 1) .. string.sub(body, e) else body = string.sub(body, 1, a - 1) end
  end
end
local t = now
if gat > t then t = gat end
local lvl = gl - (t - gat) * rlim
if lvl < 0 then lvl = 0 end
local need = cost * rwin
local cap = rlim * rwin
local gok = lvl + need <= cap
local cur = now / bms
cur = cur - cur % 1
if wi < cur - span then wn = 0 end
local wok = wn + cost <= wlim
local total = used + sum
local hok = total + amt <= hlim
local r = 0
if gok and wok and hok then
  r = 1
  lvl = lvl + need
  if wi == cur then wn = wn + cost else wi, wn = cur, wn + cost end
  sum = sum + amt
  local exp = now + ttl
  if exp > mx then mx = exp end
  if exp < mn then mn = exp end
  body = body .. '\\n#' .. id .. '\\n' .. amt .. '\\n' .. string.format('%d', exp)
end
local v = struct.pack('<dddddddd', lvl, t, wi, wn, used, sum, mn, mx) .. body
if s then redis.call('SET', KEYS[1], v, 'KEEPTTL') else redis.call('SET', KEYS[1], v, 'PX', 2678400000) end
local rem = (cap - lvl) / rwin
return struct.pack('<dddddddddddddddd', r, 1, rlim - rem, rem, lvl / rlim, 0, 1, wn, wlim - wn, 3600000, 0, 1, total + amt, hlim - total - amt, 0, 0)
`

/** The rules floor's numbers: now, cost, amount, hold TTL, GCRA limit per ms and window, the
 * window's limit, bucket and span, the credit limit. */
const rulesArg = (i: number) => {
  const b = Buffer.alloc(80)
  const xs = [T0 + i, 1, 1, 300_000, 1e9 / 60_000, 60_000, 1e9, 3_600_000, 24, 1e15]
  for (let k = 0; k < xs.length; k++) b.writeDoubleLE(xs[k]!, 8 * k)
  return b
}

type Call = (i: number) => {
  script: 'consume' | 'fixed' | 'trivial' | 'oneKey' | 'oneKeyRecord' | 'rules'
  keys: string[]
  args: Array<string | Buffer>
}

const T0 = 1_795_000_000_000
/** The end of the account's period plus a day: the credit counter is kept until then. */
const KEEP = T0 + 31 * 86_400_000
/**
 * The rate limit (GCRA), the daily quota (24 hourly buckets) and the credit hold, as the core
 * sends them to a store that may come back empty: the hold for 5 minutes (`reservationTtlMs`),
 * its counter kept to the period's end, asked to be rebuilt when missing (the first call
 * rebuilds it from a base of 0, as the core does after a `missing` answer).
 */
const CHECKS = (id: string, first: boolean): Check[] => [
  { type: 'gcra', key: '{a}:g', name: 'rpm', limit: 1e9, windowMs: 60_000, cost: 1 },
  {
    type: 'window',
    key: '{a}:w',
    name: 'daily',
    limit: 1e9,
    windowMs: 86_400_000,
    bucketMs: 3_600_000,
    cost: 1,
  },
  {
    type: 'hold',
    key: '{a}:h',
    name: 'credits',
    limit: 1e15,
    amount: 1,
    holdId: id,
    ttlMs: 300_000,
    keepUntil: KEEP,
    rebuild: first ? { base: 0 } : {},
  },
]

/** Admission i, carrying the release of the hold taken `inFlight` requests earlier. */
const tollbooth =
  (inFlight: number): Call =>
  (i) => {
    const now = T0 + i
    const ops: SettleOp[] =
      i >= inFlight
        ? [
            {
              type: 'release',
              key: '{a}:h',
              holdId: `req_${i - inFlight}`,
              charge: 1,
              keepUntil: KEEP,
            },
          ]
        : []
    // The counters' calls as the adapter builds them: the checks, the carried settle and
    // the admission's identity (its record kept 60 s, for which its hold stands).
    const { keys, args } = consumeCall(
      '',
      60_000,
      ops.length ? settleBatch('', ops, now) : undefined,
      CHECKS(`req_${i}`, i === 0),
      now,
      { key: `{a}:a:req_${i}`, ttlMs: 60_000, holdId: `req_${i}` },
    )
    return { script: 'consume', keys, args }
  }

/**
 * The peers' job as tollbooth does it: a key with a per-minute rate limit and nothing else
 * (no quota, no credits, so no settle to carry), the admission's record written beside it
 * (with no hold to stand for it), as `remoteConsume` sends it.
 */
const rateOnly: Call = (i) => {
  const { keys, args } = consumeCall('', 60_000, undefined, [CHECKS('', false)[0]!], T0 + i, {
    key: `{a}:a:req_${i}`,
    ttlMs: 60_000,
    holdId: `req_${i}`,
  })
  return { script: 'consume', keys, args }
}

/** The floors' argument: the time and a cost, as two packed doubles. */
const floorArg = (i: number) => {
  const b = Buffer.alloc(16)
  b.writeDoubleLE(T0 + i, 0)
  b.writeDoubleLE(1, 8)
  return b
}

const SCENARIOS: Array<[string, Call]> = [
  ['tollbooth, 1 in flight', tollbooth(1)],
  ['tollbooth, 32 in flight', tollbooth(32)],
  ['tollbooth, 100 in flight', tollbooth(100)],
  ['tollbooth, the peers\u2019 job: a rate limit alone', rateOnly],
  [
    'fixed window (the peers\u2019 job)',
    () => ({ script: 'fixed', keys: ['{a}:fw'], args: ['60000'] }),
  ],
  [
    'floor: one packed string per account, no rule',
    (i) => ({ script: 'oneKey', keys: ['{a}:s'], args: [floorArg(i)] }),
  ],
  [
    'floor: the same + the record (SET PX)',
    (i) => ({ script: 'oneKeyRecord', keys: ['{a}:s', `{a}:a:req_${i}`], args: [floorArg(i)] }),
  ],
  [
    'floor: the three rules, pared down, in one string per account',
    (i) => ({
      script: 'rules',
      keys: ['{a}:r', `{a}:a:req_${i}`],
      args: [rulesArg(i), i > 0 ? `req_${i - 1}` : '', `req_${i}`],
    }),
  ],
]

const answers = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
}

/** Instructions of a private redis-server that served `calls` N times, then shut down. */
async function instructions(call: Call, warm: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'tb-cg-'))
  const port = await freePort()
  const server = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      `--callgrind-out-file=${join(dir, 'cg.%p')}`,
      'redis-server',
      '--port',
      String(port),
      '--save',
      '',
      '--appendonly',
      'no',
      // The server's timers once a second, not ten times: their instructions grow with the
      // wall time valgrind takes, which moved a call's figure by ±1,500 at the default.
      '--hz',
      '1',
    ],
    { stdio: 'ignore' },
  )
  const exited = new Promise((resolve) => server.once('exit', resolve))
  // valgrind takes a few seconds to start the server: wait until its port answers.
  for (let i = 0; !(await answers(port)); i++) {
    if (i > 300) throw new Error('redis-server under valgrind did not start')
    await new Promise((r) => setTimeout(r, 100))
  }
  const client = new Redis(port, '127.0.0.1', { retryStrategy: () => null })
  client.on('error', () => {})
  // tollbooth's counters as the Redis Functions library it loads; the others as scripts.
  // Every run loads all of them, so what loading costs cancels out against the baseline.
  await client.call('FUNCTION', 'LOAD', LIBRARY)
  const sha = {
    fixed: (await client.script('LOAD', FIXED_WINDOW)) as string,
    trivial: (await client.script('LOAD', 'return 1')) as string,
    oneKey: (await client.script('LOAD', ONE_KEY.replace('RECORD', ''))) as string,
    rules: (await client.script('LOAD', RULES)) as string,
    oneKeyRecord: (await client.script(
      'LOAD',
      ONE_KEY.replace('RECORD', "redis.call('SET', KEYS[2], 'c', 'PX', 60000)"),
    )) as string,
  }
  for (let i = 0; i < warm + N; i++) {
    const c = call(i)
    if (c.script === 'consume')
      await client.call('FCALL', CONSUME_FUNCTION, c.keys.length, ...c.keys, ...c.args)
    else await client.evalsha(sha[c.script], c.keys.length, ...c.keys, ...c.args)
  }
  await client.call('SHUTDOWN', 'NOSAVE').catch(() => {})
  client.disconnect()
  await exited
  const file = readdirSync(dir).find((f) => f.startsWith('cg.'))!
  const m = /^summary:\s+(\d+)/m.exec(readFileSync(join(dir, file), 'utf8'))
  return Number(m?.[1])
}

if (!tools.valgrind) {
  console.log('redis-script-cost: needs valgrind and redis-server; skipped')
} else {
  // Warm-up calls are part of every run, so they cancel out against the baseline's.
  const warm = 64
  const base = await instructions(() => ({ script: 'trivial', keys: [], args: [] }), warm)
  const rows: Array<[string, number]> = []
  for (const [name, call] of SCENARIOS) {
    const total = await instructions(call, warm)
    rows.push([name, (total - base) / (warm + N)])
  }
  console.log(`| script (${warm + N} calls each) | instructions per call, over a trivial script |`)
  console.log('|---|---:|')
  for (const [name, n] of rows)
    console.log(`| ${name} | ${Math.round(n).toLocaleString('en-US')} |`)
  console.log(JSON.stringify(Object.fromEntries(rows.map(([k, v]) => [k, Math.round(v)]))))
}
