/**
 * First start of a docker compose deployment: makes the secrets the services
 * share, once, in the directory given (a volume only they mount), so that
 * `docker compose up` needs no hand-written `.env`. Existing files are kept,
 * so a restart keeps resume tokens valid. Writes:
 * - `cluster_secret`: 32 random bytes, base64 (CLUSTER_SECRET_FILE);
 * - `redis_password`: 32 random bytes, hex (Redis's requirepass);
 * - `redis_url`: `redis://:<password>@<REDIS_HOST or redis>:6379` (REDIS_URL_FILE).
 * Each is readable by the relay's user only (and root, which Redis runs as).
 * Prints file names, never contents.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node dist/src/init-secrets.js <dir>');
  process.exit(2);
}
const owner = Number(process.env.SECRETS_UID ?? 1000);

function keep(name: string, make: () => string): string {
  const file = join(dir as string, name);
  if (!existsSync(file)) {
    writeFileSync(file, make(), { mode: 0o400 });
    console.log(`made ${name}`);
  } else console.log(`kept ${name}`);
  try {
    chownSync(file, owner, 0);
    chmodSync(file, 0o440);
  } catch {
    // Not root (a bind mount the caller prepared): leave ownership as it is.
  }
  return readFileSync(file, 'utf8').trim();
}

keep('cluster_secret', () => randomBytes(32).toString('base64'));
const password = keep('redis_password', () => randomBytes(32).toString('hex'));
keep('redis_url', () => `redis://:${password}@${process.env.REDIS_HOST ?? 'redis'}:6379`);
