/**
 * @module examples/shared/start
 *
 * What every example's `server.ts` says on start: which secrets it uses (the built-in
 * development ones unless `TOLLBOOTH_SECRET` / `SESSION_SECRET` are set, and how to set them),
 * and, when it cannot listen, one line saying why and what to do instead of a stack trace.
 */

/** Development only: keys and sessions made with them are forgeable by anyone who reads this. */
const DEV_SECRET = 'demo-secret-change-me-demo-secret-change-me'
const DEV_SESSION_SECRET = 'demo-session-secret-change-me-0123456789'

/**
 * The key secret and the portal's session secret from the environment, else the built-in
 * development ones, saying so on stderr (once each) with how to set them.
 */
export function exampleSecrets(env: NodeJS.ProcessEnv = process.env): {
  secret: string
  sessionSecret: string
} {
  const fallback: string[] = []
  if (!env.TOLLBOOTH_SECRET) fallback.push('TOLLBOOTH_SECRET')
  if (!env.SESSION_SECRET) fallback.push('SESSION_SECRET')
  if (fallback.length > 0)
    console.warn(
      `using the built-in development ${fallback.length === 1 ? 'secret' : 'secrets'} (${fallback.join(', ')} not set): ` +
        `fine for trying it out, never for real keys. Set ${fallback.map((v) => `${v}="$(openssl rand -base64 32)"`).join(' ')} ` +
        '(keys are HMACs of TOLLBOOTH_SECRET: keep it stable once keys are issued).',
    )
  return {
    secret: env.TOLLBOOTH_SECRET || DEV_SECRET,
    sessionSecret: env.SESSION_SECRET || DEV_SESSION_SECRET,
  }
}

/**
 * The server could not listen: one line on stderr naming the address and what to do, then
 * exit 1. A port in use (`EADDRINUSE`) says to free it or pick another with `PORT`.
 */
export function listenFailed(err: unknown, port: number, host: string): never {
  const code = (err as { code?: string } | null)?.code
  const at = `${host}:${port}`
  if (code === 'EADDRINUSE')
    console.error(
      `cannot listen on ${at}: the port is in use (another server, or this one still running). Stop it, or start with PORT=<another port>.`,
    )
  else if (code === 'EACCES')
    console.error(`cannot listen on ${at}: permission denied. Start with PORT=<a port above 1023>.`)
  else if (code === 'EADDRNOTAVAIL')
    console.error(`cannot listen on ${at}: no such address here. Start with HOST=127.0.0.1.`)
  else console.error(`cannot listen on ${at}: ${err instanceof Error ? err.message : String(err)}`)
  process.exit(1)
}
