/**
 * What this process is built from, for the `relay_build_info` metric: the
 * relay's version, Node's, and which uWebSockets.js package is installed (the
 * npm repack or the official release: see the README). Read once at start.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  version: string;
  node: string;
  uws: string;
}

function packageAt(path: string | URL): { name?: string; version?: string } {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as { name?: string; version?: string };
  } catch {
    return {};
  }
}

/** The package.json of the installed uWebSockets.js: its entry point lives at <package>/dist/index.mjs or <package>/index.js. */
function uwsPackage(): { name?: string; version?: string } {
  try {
    let dir = fileURLToPath(new URL('.', import.meta.resolve('uWebSockets.js')));
    for (let i = 0; i < 3; i++) {
      const pkg = packageAt(`${dir}package.json`);
      if (pkg.version) return pkg;
      dir = fileURLToPath(new URL('..', `file://${dir}`));
    }
  } catch {
    // Not resolvable from here: reported as unknown.
  }
  return {};
}

export function readBuildInfo(): BuildInfo {
  const own = packageAt(new URL('../../package.json', import.meta.url));
  const uws = uwsPackage();
  return {
    version: own.version ?? 'unknown',
    node: process.versions.node,
    uws: uws.version ? `${uws.name ?? 'uWebSockets.js'}@${uws.version}` : 'unknown',
  };
}
