/**
 * A local certificate authority and a server certificate it signed, made with
 * the `openssl` command, for TLS on loopback (`npm run cluster`, the tests)
 * and for docker compose's first start without real certificates. Valid for
 * localhost and 127.0.0.1 (plus any names given), for `days` days. Trust the
 * CA (`ca.pem`) in a client to check the server's certificate properly.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface LocalCertificates {
  /** The CA's certificate (PEM): what a client trusts (curl --cacert, NODE_EXTRA_CA_CERTS). */
  ca: string;
  /** The server's certificate chain (server, then CA) and key (PEM). */
  cert: string;
  key: string;
}

const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });

export function makeCertificates(dir: string, names: string[] = [], days = 30): LocalCertificates {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  openssl(['req', '-x509', ...ec, '-keyout', caKey, '-out', ca, '-days', String(days), '-subj', '/CN=relay local CA']);
  const key = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  openssl(['req', ...ec, '-keyout', key, '-out', csr, '-subj', '/CN=localhost']);
  const ext = join(dir, 'server.ext');
  const alt = ['IP:127.0.0.1', 'DNS:localhost', ...names.map((n) => (/^[\d.]+$/.test(n) ? `IP:${n}` : `DNS:${n}`))];
  writeFileSync(ext, `subjectAltName=${alt.join(',')}\nextendedKeyUsage=serverAuth\n`);
  const leaf = join(dir, 'server-only.pem');
  openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca,
    '-CAkey',
    caKey,
    '-CAcreateserial',
    '-out',
    leaf,
    '-days',
    String(days),
    '-extfile',
    ext,
  ]);
  const cert = join(dir, 'server.pem');
  execFileSync('sh', ['-c', 'cat "$1" "$2" > "$3"', 'chain', leaf, ca, cert]);
  return { ca, cert, key };
}
