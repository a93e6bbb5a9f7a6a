declare module 'autocannon' {
  interface Result {
    requests: { average: number; total: number }
    latency: { p50: number; p99: number }
    non2xx: number
  }
  export default function autocannon(options: {
    url: string
    connections: number
    duration: number
    headers?: Record<string, string>
    /** Each request made from the first whose `setupRequest` may rewrite it (its headers). */
    requests?: Array<{
      setupRequest?(req: { headers?: Record<string, string> }): {
        headers?: Record<string, string>
      }
    }>
  }): Promise<Result>
}
