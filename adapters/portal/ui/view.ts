/**
 * @module tollbooth/portal/ui/view
 *
 * What a view of the page is: a function that fills a fresh container. The router gives each
 * route a new container, so an answer that arrives after the reader moved on lands in a
 * detached element and changes nothing on screen.
 */

import type { PortalConfig } from './types.js'

/** What every view gets. */
export interface ViewContext {
  config: PortalConfig
  accountId: string
  /** The route's parameters, e.g. the key id of `#/keys/<id>`. */
  params: string[]
}

/** A view: fills `root` (throwing shows the error in its place). */
export type View = (root: HTMLElement, ctx: ViewContext) => Promise<void>
