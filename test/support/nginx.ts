/**
 * @module test/support/nginx
 *
 * A private nginx (Debian's `/usr/sbin/nginx`) in front of a test server, as nearly every
 * deployment runs tollbooth: its own temporary prefix (config, logs, temp files, pid), listening
 * on a free port of 127.0.0.1, `proxy_pass` to the upstream's URL. `location` lines are added to
 * its one `location /`, `http` lines to its `http` block; `keepalive` keeps upstream connections
 * open between requests. Stopped by
 * its pid (SIGQUIT would wait for open connections: SIGTERM, then the temp dir is removed).
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from '../fault/redis-server.js'

export const NGINX = process.env['NGINX'] ?? '/usr/sbin/nginx'

/** The forwarding headers of the usual nginx reverse-proxy snippet. */
export const FORWARDED = [
  'proxy_set_header Host $host;',
  'proxy_set_header X-Real-IP $remote_addr;',
  'proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
  'proxy_set_header X-Forwarded-Proto $scheme;',
]

export interface Nginx {
  /** `http://127.0.0.1:<port>` of nginx. */
  url: string
  pid: number
  /** nginx's error log so far (what it says about upstreams it gave up on). */
  errorLog(): string
  /** nginx's access log so far: one `<status> <request>` line per request. */
  accessLog(): string
  stop(): Promise<void>
}

/**
 * Starts nginx proxying to `upstream` (`http://127.0.0.1:<port>`), with nginx's defaults unless
 * `location` or `http` lines say otherwise; resolves once it accepts connections.
 *
 * @param o.keepalive kept-alive upstream connections, as nginx's docs set them up: an `upstream`
 *   block with `keepalive 16`, HTTP/1.1 and an empty `Connection` header to the upstream
 */
export async function startNginx(
  upstream: string,
  o: { location?: string[]; http?: string[]; keepalive?: boolean; pass?: string } = {},
): Promise<Nginx> {
  const http = [...(o.http ?? [])]
  const location = [...(o.location ?? [])]
  let pass = o.pass ?? upstream
  if (o.keepalive) {
    http.push(`upstream app { server ${new URL(upstream).host}; keepalive 16; }`)
    location.push('proxy_http_version 1.1;', 'proxy_set_header Connection "";')
    pass = 'http://app'
  }
  const dir = mkdtempSync(join(tmpdir(), 'tollbooth-nginx-'))
  const port = await freePort()
  // As root, nginx's worker would run as nobody, who cannot write into this private dir.
  const conf = `${process.getuid?.() === 0 ? 'user root;' : ''}
worker_processes 1;
error_log ${dir}/error.log info;
events { worker_connections 256; }
http {
  log_format tb '$status $request $upstream_status';
  access_log ${dir}/access.log tb;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  ${http.join('\n  ')}
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass ${pass};
      ${location.join('\n      ')}
    }
  }
}
`
  writeFileSync(join(dir, 'nginx.conf'), conf)
  const proc: ChildProcess = spawn(
    NGINX,
    ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', `daemon off; pid ${dir}/nginx.pid;`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let stderr = ''
  let spawnFailed = false
  proc.stderr!.on('data', (d) => {
    stderr += d
  })
  // No such binary: an 'error' event (ENOENT) instead of an exit.
  proc.once('error', (err) => {
    spawnFailed = true
    stderr += String(err)
  })
  const exited = new Promise<void>((r) => proc.once('exit', () => r()))
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 5_000
  const fail = async (what: string) => {
    if (proc.exitCode === null && !spawnFailed) {
      process.kill(proc.pid!, 'SIGTERM')
      await exited
    }
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`nginx ${what}: ${stderr}`)
  }
  for (;;) {
    if (proc.exitCode !== null || spawnFailed) await fail('exited')
    if (await accepts(port)) break
    if (Date.now() > deadline) await fail('did not start')
    await new Promise((r) => setTimeout(r, 20))
  }
  const read = (name: string) => {
    try {
      return readFileSync(join(dir, name), 'utf8')
    } catch {
      return ''
    }
  }
  return {
    url,
    pid: proc.pid!,
    errorLog: () => read('error.log'),
    accessLog: () => read('access.log'),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        process.kill(proc.pid!, 'SIGTERM')
        await exited
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Whether something accepts a TCP connection on 127.0.0.1:`port` (asks nothing of it). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/**
 * How many TCP connections to 127.0.0.1:`port` are established now, read from Linux's
 * `/proc/net/tcp` (the server's side of each): nginx's idle kept-alive upstream connections.
 */
export function establishedTo(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f[1] === local && f[3] === '01').length
}
