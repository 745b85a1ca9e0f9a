/**
 * The only pino import. Privacy by construction: call sites pass only fixed
 * fields (no bodies, tokens, addresses or identifiers ever reach a log call),
 * and the redact list is a second fence in case one ever does.
 */
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

/**
 * Keys that could carry what a client sent or who it is, at the top level and
 * one level down. Generic names (`frame`, `text`, `data`…) are here because a
 * future call site is likelier to pass a frame under one of them than to name
 * it `body`.
 */
const SENSITIVE = [
  'body',
  'token',
  'address',
  'ip',
  'remoteAddress',
  'headers',
  'frame',
  'text',
  'data',
  'message',
  'payload',
  'resume',
  'interests',
  'code',
  'id',
  'sessionId',
  'chat',
  'url',
];
const REDACT = [...SENSITIVE, ...SENSITIVE.map((key) => `*.${key}`)];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'anon-chat-relay' },
    redact: { paths: REDACT, censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}

/**
 * What an unexpected exception may put in a log: its class and where it was
 * thrown. Not its message, which could quote client input.
 */
export function errorSummary(err: unknown): { type: string; at: string[] } {
  if (!(err instanceof Error)) return { type: typeof err, at: [] };
  const frames = (err.stack ?? '')
    .split('\n')
    .slice(1, 6)
    .map((line) => line.trim());
  return { type: err.name, at: frames };
}
