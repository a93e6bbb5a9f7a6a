/**
 * @module examples/pdf-api/operations
 *
 * The PDF operations, each a route guarded by `requireApiKey` at 1 credit under its own usage
 * category, so `GET /api/v1/account/usage` can break the month down per operation:
 * `POST /api/v1/merge`, `/compress`, `/split`, `/rotate` and `/accessibility-check`
 * (category `accessibilityCheck`). The processing is a deterministic stand-in: documents are
 * given by URL and the answers are computed from it. A bad body is a 400 naming the field,
 * and is not charged.
 */

import express, { type Express, type Request, type Response } from 'express'
import { z } from 'zod'
import { requireApiKey } from '../../adapters/express/index.js'
import type { Tollbooth } from '../../src/index.js'

/** The operations, as they appear in the usage breakdown. */
export const OPERATIONS = ['merge', 'compress', 'split', 'rotate', 'accessibilityCheck'] as const
export type Operation = (typeof OPERATIONS)[number]

const file = z.url({ protocol: /^https?$/, message: 'must be an http(s) URL of a PDF' })

const SCHEMAS = {
  merge: z.object({ files: z.array(file).min(2).max(20) }).strict(),
  compress: z
    .object({ file, quality: z.enum(['low', 'medium', 'high']).default('medium') })
    .strict(),
  split: z
    .object({
      file,
      ranges: z
        .array(z.string().regex(/^\d+(-\d*)?$/, 'must be a page range such as "1-3" or "4-"'))
        .min(1)
        .max(50),
    })
    .strict(),
  rotate: z
    .object({
      file,
      degrees: z.union([z.literal(90), z.literal(180), z.literal(270)]),
      pages: z.array(z.number().int().positive()).max(1000).optional(),
    })
    .strict(),
  accessibilityCheck: z
    .object({ file, standard: z.enum(['PDF/UA-1', 'WCAG-2.1-AA']).default('PDF/UA-1') })
    .strict(),
}

/** FNV-1a: the stand-in derives page counts and findings from the document's URL. */
function hash(s: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0
  return h
}

const pagesOf = (url: string) => 1 + (hash(url) % 24)

/** What each operation answers, from its validated body. */
const RUN: { [O in Operation]: (body: z.output<(typeof SCHEMAS)[O]>, out: string) => object } = {
  merge: (b, out) => ({ output: { url: out, pages: b.files.reduce((n, f) => n + pagesOf(f), 0) } }),
  compress: (b, out) => {
    const ratio = { low: 0.8, medium: 0.55, high: 0.3 }[b.quality]
    const before = pagesOf(b.file) * 180_000
    return { output: { url: out, pages: pagesOf(b.file), sizeBytes: Math.round(before * ratio) } }
  },
  split: (b, out) => ({
    outputs: b.ranges.map((range, i) => ({ range, url: out.replace(/\.pdf$/, `-${i + 1}.pdf`) })),
  }),
  rotate: (b, out) => ({
    output: { url: out, pages: pagesOf(b.file), degrees: b.degrees, rotated: b.pages ?? 'all' },
  }),
  accessibilityCheck: (b) => {
    const h = hash(b.file)
    const issues = [
      { rule: 'alt-text', message: 'Figure on page 2 has no alternative text' },
      { rule: 'reading-order', message: 'Reading order is not defined' },
      { rule: 'language', message: 'Document language is not set' },
    ].filter((_, i) => (h >> i) & 1)
    return { standard: b.standard, passed: issues.length === 0, issues }
  },
}

const PATHS: Record<Operation, string> = {
  merge: '/api/v1/merge',
  compress: '/api/v1/compress',
  split: '/api/v1/split',
  rotate: '/api/v1/rotate',
  accessibilityCheck: '/api/v1/accessibility-check',
}

/** Registers one route per operation on `app`. */
export function operationRoutes(app: Express, tb: Tollbooth): void {
  // Parsed after the key check, so a request with a bad key never gets its body read.
  const json = express.json({ limit: '64kb' })
  for (const op of OPERATIONS) {
    app.post(
      PATHS[op],
      requireApiKey(tb, { cost: 1, category: op }),
      json,
      (req: Request, res: Response) => {
        const r = SCHEMAS[op].safeParse(req.body ?? {})
        if (!r.success) {
          const issues = r.error.issues.map((i) => ({
            path: i.path.join('.') || '(body)',
            message:
              i.code === 'unrecognized_keys'
                ? `unknown field(s) ${i.keys.map((k) => `"${k}"`).join(', ')}`
                : i.message,
          }))
          res.status(400).json({
            error: `Invalid request body: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
            code: 'invalid_request',
            issues,
          })
          return
        }
        const out = `https://files.pdf-api.example/out/${req.apiKey.requestId}.pdf`
        const run = RUN[op] as (body: unknown, out: string) => object
        res.json({ operation: op, ...run(r.data, out) })
      },
    )
  }
}
