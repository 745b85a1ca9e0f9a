/**
 * The one catalogue of what can go wrong. Recoverable problems are sent as
 * `{"type":"error","code":...}` and the socket stays open; terminal ones close
 * the socket with a documented code. docs/protocol.md mirrors these tables.
 */

export const ErrorCodes = {
  bad_json: 'Frame is not a JSON object with a string "type".',
  bad_frame: 'Binary frames are not part of protocol v1; send JSON text.',
  unknown_type: 'Unknown frame type.',
  bad_field: 'A field is missing or has the wrong type or size.',
  already_hello: 'This connection has already said hello.',
  not_in_chat: 'You are not in a chat.',
  already_in_chat: 'You are already in a chat; leave it first.',
  already_queued: 'You are already waiting for a partner; cancel first.',
  not_queued: 'You are not waiting for a partner.',
  message_too_long: 'Message body is larger than the limit.',
  rate_limited: 'Too many frames; slow down.',
  queue_full: 'Too many people are waiting right now; try again shortly.',
  cooldown: 'Several people reported this session; finding strangers is paused for a while.',
  invite_unknown: 'No invite has this code.',
  invite_expired: 'This invite has expired.',
  invite_used: 'This invite has already paired two people.',
  unavailable:
    "The relay cannot reach your partner's server or its shared state right now; send it again after retryAfterMs.",
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/** Close codes. 1xxx are standard; 44xx are this protocol's own (reconnecting will not help), 45xx are server-side. */
export const CloseCodes = {
  going_away: 1001,
  internal_error: 1011,
  try_again_later: 1013,
  protocol_violation: 4400,
  hello_timeout: 4408,
  session_replaced: 4409,
  slow_consumer: 4413,
  too_many_errors: 4422,
  unsupported_version: 4426,
  flood: 4429,
  too_many_sessions: 4430,
  server_full: 4503,
} as const;

export type CloseReason = keyof typeof CloseCodes;

export const closeCode = (reason: CloseReason): number => CloseCodes[reason];

/** Errors that are the client's mistake; too many of them close the socket with 4422. */
const VIOLATIONS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'bad_json',
  'bad_frame',
  'unknown_type',
  'bad_field',
  'already_hello',
  'not_in_chat',
  'already_in_chat',
  'already_queued',
  'not_queued',
  'message_too_long',
]);

export const isViolation = (code: ErrorCode): boolean => VIOLATIONS.has(code);
