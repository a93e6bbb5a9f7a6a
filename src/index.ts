/**
 * @module tollbooth
 *
 * The public surface of the core. Adapters import from here only.
 */

export { DEFAULT_PROVIDERS } from './byok/providers.js'
export type { ProviderKeyView, ProviderVerifier } from './byok/service.js'
export { type Clock, type ManualClock, manualClock, systemClock } from './clock.js'
export { Admission, type ApiKeyInfo, type Decision, type Denial, type Report } from './decision.js'
export {
  type AnyTollboothError,
  ConfigError,
  ConflictError,
  type ErrorCode,
  type InvalidField,
  InvalidRequestError,
  isTollboothError,
  NotFoundError,
  NotImplementedError,
  StorageUnavailableError,
  TollboothError,
} from './errors.js'
export type { HeaderFamilies } from './headers.js'
export { isWellFormedKey } from './keys/format.js'
export type { CreatedKey, CreateKeyInput, KeyView, UpdateKeyInput } from './keys/manager.js'
export { QUOTA_WINDOWS } from './limits/admission.js'
export { type GcraVerdict, gcra } from './limits/gcra.js'
export { type HoldVerdict, hold, release } from './limits/hold.js'
export { rollingWindow, type WindowVerdict } from './limits/rolling-window.js'
export type { AccountView } from './metering/accounts.js'
export { type Period, parseMonth, periodOf } from './metering/periods.js'
export type { LogEntry, UsageReport } from './metering/usage.js'
export type {
  Plan,
  ResolvedOptions,
  ResolvedRoute,
  RouteOptions,
  TollboothOptions,
} from './options.js'
export {
  clientIp,
  type HeaderSource,
  type KeySource,
  readHeader,
  type TollboothRequest,
  type TrustProxy,
} from './request.js'
export type { Outcome } from './settle.js'
export { decodeLogCursor, encodeLogCursor, memoryStorage } from './storage/memory.js'
export type * from './storage/types.js'
export { createTollbooth, isRoute, type Tollbooth } from './tollbooth.js'
