#!/usr/bin/env node
// Makes sure the system programs the test suite drives are present: real nginx,
// real Redis and Debian's Chromium. On a Debian machine as root (as in CI) it
// installs what is missing with apt-get; anywhere else it stops with the exact
// command to run. Runs before `npm test` (the "pretest" script).
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';

// program -> Debian package. Keep in sync with README "Running the tests".
const REQUIRED = [
  { bin: 'nginx', pkg: 'nginx' },
  { bin: 'redis-server', pkg: 'redis-server' },
  { bin: 'chromium', pkg: 'chromium' },
  // Test certificates for TLS on loopback (Redis over rediss://, nginx).
  { bin: 'openssl', pkg: 'openssl' },
];

const SEARCH = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin', '/sbin', '/usr/local/sbin'];
const found = (bin) => SEARCH.some((dir) => dir && existsSync(join(dir, bin)));

const missing = REQUIRED.filter((r) => !found(r.bin));
if (missing.length === 0) process.exit(0);

const pkgs = missing.map((m) => m.pkg);
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const isDebian = existsSync('/etc/debian_version') && found('apt-get');

if (!isRoot || !isDebian) {
  process.stderr.write(
    `The tests need these programs, which are not installed: ${missing.map((m) => m.bin).join(', ')}.\n` +
      `Install them with:\n\n    sudo apt-get update && sudo apt-get install -y ${REQUIRED.map((r) => r.pkg).join(' ')}\n\n` +
      '(On other systems, install nginx, redis-server, chromium and openssl with your package manager and put them on PATH.)\n',
  );
  process.exit(1);
}

process.stderr.write(`Installing test prerequisites with apt-get: ${pkgs.join(' ')}\n`);
// Packages must not start their own daemons: the tests start private instances on loopback.
const policy = '/usr/sbin/policy-rc.d';
const ownPolicy = !existsSync(policy);
if (ownPolicy) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
try {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env });
} finally {
  if (ownPolicy) rmSync(policy, { force: true });
}
const still = REQUIRED.filter((r) => !found(r.bin));
if (still.length > 0) {
  process.stderr.write(`apt-get finished but these are still missing: ${still.map((m) => m.bin).join(', ')}\n`);
  process.exit(1);
}
