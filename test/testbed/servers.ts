// Sample workloads for the testbed: each function returns a Deployment or
// StatefulSet, its Service, and the files its containers read from the
// work directory. The testbed kubelet ignores `image` and runs the
// container's command from the Debian packages installed on the host, so
// `image` only documents which upstream image the container replaces.
//
// Every Service is a dual-stack ClusterIP Service (PreferDualStack, IPv4
// then IPv6). Each Pod keeps its own files under <workDir>/<pod name>.

import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { AppsV1Api, CoreV1Api, type KubeConfig, type V1Container, type V1Deployment, type V1Service, type V1StatefulSet } from '@kubernetes/client-node';

export interface WorkloadFile {
  path: string;
  content: string;
}

export interface SampleWorkload {
  workload: V1Deployment | V1StatefulSet;
  service: V1Service;
  files: WorkloadFile[];
}

export interface SampleOptions {
  // Absolute path of a directory for the workload's files and per-pod state.
  workDir: string;
  name?: string;
  replicas?: number;
}

const POD_NAME_ENV = { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } };
const POSTGRES_BIN = '/usr/lib/postgresql/15/bin';

// Writes the workload's files. The work directory is made searchable by
// everyone (mode 0755) because two samples drop root: PostgreSQL runs as
// user postgres, and nginx's workers run as user nobody.
export async function writeWorkloadFiles(workDir: string, sample: SampleWorkload): Promise<void> {
  await mkdir(workDir, { recursive: true });
  await chmod(workDir, 0o755);
  for (const file of sample.files) await writeFile(file.path, file.content, { mode: 0o644 });
}

// Creates the Service and the workload in the namespace.
export async function createSampleWorkload(kc: KubeConfig, namespace: string, sample: SampleWorkload): Promise<void> {
  await kc.makeApiClient(CoreV1Api).createNamespacedService({ namespace, body: sample.service });
  const apps = kc.makeApiClient(AppsV1Api);
  if (sample.workload.kind === 'StatefulSet') await apps.createNamespacedStatefulSet({ namespace, body: sample.workload as V1StatefulSet });
  else await apps.createNamespacedDeployment({ namespace, body: sample.workload as V1Deployment });
}

// nginx from Debian's nginx-light, serving the package's default page on
// port 80 over IPv4 and IPv6, with an httpGet readiness probe.
export function nginxWorkload(options: SampleOptions): SampleWorkload {
  const name = options.name ?? 'nginx';
  const configPath = join(options.workDir, `${name}.conf`);
  // Relative paths in the configuration resolve against the prefix (-p),
  // which is the pod's own directory.
  const config = `daemon off;
worker_processes 1;
pid nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path client_body;
  proxy_temp_path proxy;
  fastcgi_temp_path fastcgi;
  uwsgi_temp_path uwsgi;
  scgi_temp_path scgi;
  server {
    listen 80;
    listen [::]:80;
    root /var/www/html;
    index index.html index.nginx-debian.html;
  }
}
`;
  const container: V1Container = {
    name: 'nginx',
    image: 'nginx',
    command: ['sh', '-c', 'mkdir -p "$0/$POD_NAME" && exec nginx -e stderr -p "$0/$POD_NAME/" -c "$1"', options.workDir, configPath],
    env: [POD_NAME_ENV],
    ports: [{ name: 'http', containerPort: 80 }],
    readinessProbe: { httpGet: { path: '/', port: 'http' }, periodSeconds: 1 },
  };
  return {
    workload: deployment(name, options.replicas ?? 1, container),
    service: service(name, [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]),
    files: [{ path: configPath, content: config }],
  };
}

export interface PostgresOptions extends SampleOptions {
  // Sleep before the server starts, in seconds.
  startupDelaySeconds?: number;
}

// PostgreSQL 15 as a StatefulSet, listening on all addresses on port 5432
// with trust authentication, so psql connects as user postgres without a
// password. An exec probe runs pg_isready.
//
// The start takes more than one second for two reasons. The first start of
// each pod runs initdb. Every start also sleeps startupDelaySeconds (1.5 by
// default) before exec'ing postgres, which takes the place of the recovery time
// of a database larger than an empty cluster.
export function postgresWorkload(options: PostgresOptions): SampleWorkload {
  const name = options.name ?? 'postgres';
  // The container starts as root, as the postgres image's entrypoint does,
  // creates the pod's directory for user postgres and drops to that user,
  // because postgres refuses to run as root.
  const script = `set -e
dir="$0/$POD_NAME"
mkdir -p "$dir"
chown postgres:postgres "$dir"
exec setpriv --reuid=postgres --regid=postgres --init-groups sh -c '
set -e
if [ ! -s "$0/data/PG_VERSION" ]; then
  ${POSTGRES_BIN}/initdb -D "$0/data" -U postgres --auth=trust --no-sync > "$0/initdb.log"
  printf "host all all 0.0.0.0/0 trust\\nhost all all ::/0 trust\\n" >> "$0/data/pg_hba.conf"
fi
sleep "$STARTUP_DELAY_SECONDS"
exec ${POSTGRES_BIN}/postgres -D "$0/data" -p 5432 -c listen_addresses="*" -k "$0"
' "$dir"`;
  const container: V1Container = {
    name: 'postgres',
    image: 'postgres:15',
    command: ['sh', '-c', script, options.workDir],
    env: [POD_NAME_ENV, { name: 'STARTUP_DELAY_SECONDS', value: String(options.startupDelaySeconds ?? 1.5) }],
    ports: [{ name: 'postgres', containerPort: 5432 }],
    readinessProbe: { exec: { command: [`${POSTGRES_BIN}/pg_isready`, '-h', '127.0.0.1', '-p', '5432', '-q'] }, periodSeconds: 1 },
  };
  return {
    workload: statefulSet(name, options.replicas ?? 1, container),
    service: service(name, [{ name: 'postgres', port: 5432, targetPort: 'postgres', protocol: 'TCP' }]),
    files: [],
  };
}

// Redis without persistence, protected mode off, bound to every IPv4 and
// IPv6 address, with a tcpSocket readiness probe.
export function redisWorkload(options: SampleOptions): SampleWorkload {
  const name = options.name ?? 'redis';
  const container: V1Container = {
    name: 'redis',
    image: 'redis',
    command: ['redis-server', '--port', '6379', '--bind', '* -::*', '--protected-mode', 'no', '--save', '', '--appendonly', 'no'],
    ports: [{ name: 'redis', containerPort: 6379 }],
    readinessProbe: { tcpSocket: { port: 'redis' }, periodSeconds: 1 },
  };
  return {
    workload: deployment(name, options.replicas ?? 1, container),
    service: service(name, [{ name: 'redis', port: 6379, targetPort: 'redis', protocol: 'TCP' }]),
    files: [],
  };
}

export interface DnsOptions extends SampleOptions {
  // The A record that the server returns: the test name and its address.
  recordName?: string;
  recordAddress?: string;
  // Wait before dnsmasq starts, in seconds. The container prints
  // "starting <Unix ms>" when the wait ends, just before dnsmasq binds.
  startupDelaySeconds?: number;
  // false leaves out the readiness probe, so the pod turns Ready as its
  // container starts, before dnsmasq binds its port. Defaults to true.
  readinessProbe?: boolean;
}

export const DNS_RECORD_NAME = 'web.testbed.example';
export const DNS_RECORD_ADDRESS = '198.18.200.1';

// dnsmasq from dnsmasq-base, returning one fixed A record on UDP port 53,
// with no upstream servers, no /etc/hosts and no DHCP. The readiness probe
// asks the server for its own record with dig.
export function dnsWorkload(options: DnsOptions): SampleWorkload {
  const name = options.name ?? 'dns';
  const recordName = options.recordName ?? DNS_RECORD_NAME;
  const recordAddress = options.recordAddress ?? DNS_RECORD_ADDRESS;
  const dnsmasq = [
    'dnsmasq',
    '--keep-in-foreground',
    '--log-facility=-',
    '--conf-file=/dev/null',
    // An empty --pid-file writes no PID file.
    '--pid-file',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    '--port=53',
    `--host-record=${recordName},${recordAddress}`,
  ];
  const delay = options.startupDelaySeconds;
  const container: V1Container = {
    name: 'dnsmasq',
    image: 'dnsmasq',
    command: delay === undefined ? dnsmasq : ['sh', '-c', 'sleep "$0" && echo "starting $(date +%s%3N)" && exec "$@"', String(delay), ...dnsmasq],
    ports: [{ name: 'dns', containerPort: 53, protocol: 'UDP' }],
    ...(options.readinessProbe === false
      ? {}
      : { readinessProbe: { exec: { command: ['sh', '-c', `dig @127.0.0.1 +short +time=1 +tries=1 ${recordName} | grep -qx ${recordAddress.replace(/\./g, '\\.')}`] }, periodSeconds: 1 } }),
  };
  return {
    workload: deployment(name, options.replicas ?? 1, container),
    service: service(name, [{ name: 'dns', port: 53, targetPort: 'dns', protocol: 'UDP' }]),
    files: [],
  };
}

export interface NodeHttpOptions extends SampleOptions {
  // Wait before binding the port, in milliseconds.
  startupDelayMs?: number;
  // listen() backlog: accepted connections waiting for the server. Node.js
  // defaults to 511, and the pod's net.core.somaxconn (4096) caps it.
  backlog?: number;
  // false leaves out the readiness probe, so the pod turns Ready as its
  // container starts, before the server listens. Defaults to true.
  readinessProbe?: boolean;
}

// The Node.js server: it waits STARTUP_DELAY_MS, binds port 8080 on every
// IPv4 and IPv6 address with a backlog of LISTEN_BACKLOG and prints
// "listening <Unix ms>". Each response is "hello from <pod name>".
const NODE_HTTP_SERVER = `
const http = require('node:http');
const delayMs = Number(process.env.STARTUP_DELAY_MS || 0);
const backlog = Number(process.env.LISTEN_BACKLOG || 511);
setTimeout(() => {
  const server = http.createServer((req, res) => res.end('hello from ' + process.env.POD_NAME + '\\n'));
  server.listen({ port: 8080, host: '::', ipv6Only: false, backlog }, () => console.log('listening ' + Date.now()));
}, delayMs);
process.on('SIGTERM', () => process.exit(0));
`;

export function nodeHttpWorkload(options: NodeHttpOptions): SampleWorkload {
  const name = options.name ?? 'node-http';
  const container: V1Container = {
    name: 'server',
    image: 'node:20',
    command: [process.execPath, '-e', NODE_HTTP_SERVER],
    env: [POD_NAME_ENV, { name: 'STARTUP_DELAY_MS', value: String(options.startupDelayMs ?? 0) }, { name: 'LISTEN_BACKLOG', value: String(options.backlog ?? 511) }],
    ports: [{ name: 'http', containerPort: 8080 }],
    ...(options.readinessProbe === false ? {} : { readinessProbe: { tcpSocket: { port: 'http' }, periodSeconds: 1 } }),
  };
  return {
    workload: deployment(name, options.replicas ?? 1, container),
    service: service(name, [{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]),
    files: [],
  };
}

function podTemplate(name: string, container: V1Container) {
  return { metadata: { labels: { app: name } }, spec: { containers: [container], terminationGracePeriodSeconds: 5 } };
}

function deployment(name: string, replicas: number, container: V1Container): V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name } },
    spec: { replicas, selector: { matchLabels: { app: name } }, template: podTemplate(name, container) },
  };
}

function statefulSet(name: string, replicas: number, container: V1Container): V1StatefulSet {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, labels: { app: name } },
    spec: { replicas, serviceName: name, selector: { matchLabels: { app: name } }, template: podTemplate(name, container) },
  };
}

function service(name: string, ports: NonNullable<V1Service['spec']>['ports']): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, labels: { app: name } },
    spec: { type: 'ClusterIP', selector: { app: name }, ports, ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv4', 'IPv6'] },
  };
}
