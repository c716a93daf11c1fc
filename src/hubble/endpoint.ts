// Endpoints of the Hubble observer API: the node-local socket of the
// Cilium agent (plaintext), or Hubble Relay over TCP, usually with TLS.

import { readFile } from 'node:fs/promises';

import { credentials, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';

// The Cilium agent's default (Helm value hubble.socketPath).
export const DEFAULT_HUBBLE_SOCKET = '/var/run/cilium/hubble.sock';

export interface TlsFiles {
  // PEM file of the CA that signed the server certificate.
  caFile: string;
  // PEM client certificate and key, for Relays that require mutual TLS.
  // Set both or neither.
  certFile?: string;
  keyFile?: string;
  // The name to verify in the server certificate when it differs from the
  // host in the address, such as "ui.hubble-relay.cilium.io".
  serverName?: string;
}

// HTTP/2 keepalive pings on the connection. A connection that went
// half-open, as after a node died or a NAT entry expired, delivers no
// flows and no error, so only an unanswered ping ends its call.
export interface Keepalive {
  // Time between two pings. Cilium's gRPC servers (grpc-go) reply to pings
  // sent more often than every 5 minutes with a GOAWAY by default.
  intervalMs: number;
  // Time to wait for the reply before the connection counts as broken.
  timeoutMs: number;
}

export const DEFAULT_KEEPALIVE: Keepalive = { intervalMs: 300_000, timeoutMs: 20_000 };

export type HubbleEndpoint =
  | { kind: 'socket'; path: string; keepalive?: Keepalive }
  // address is "host:port"; plaintext when tls is unset.
  | { kind: 'relay'; address: string; tls?: TlsFiles; keepalive?: Keepalive };

export interface ChannelSettings {
  target: string;
  credentials: ChannelCredentials;
  options: Partial<ChannelOptions>;
}

export function describeEndpoint(endpoint: HubbleEndpoint): string {
  return endpoint.kind === 'socket' ? `unix://${endpoint.path}` : endpoint.address;
}

// Reads the TLS files on each call, so a reconnect picks up certificates
// that were rotated on disk.
export async function channelSettings(endpoint: HubbleEndpoint): Promise<ChannelSettings> {
  const { intervalMs, timeoutMs } = endpoint.keepalive ?? DEFAULT_KEEPALIVE;
  const keepalive: Partial<ChannelOptions> = { 'grpc.keepalive_time_ms': intervalMs, 'grpc.keepalive_timeout_ms': timeoutMs };

  if (endpoint.kind === 'socket') {
    if (!endpoint.path.startsWith('/')) {
      throw new Error(`invalid Hubble socket path ${JSON.stringify(endpoint.path)}: expected an absolute path`);
    }
    return { target: `unix://${endpoint.path}`, credentials: credentials.createInsecure(), options: keepalive };
  }

  if (!endpoint.tls) {
    return { target: endpoint.address, credentials: credentials.createInsecure(), options: keepalive };
  }

  const { caFile, certFile, keyFile, serverName } = endpoint.tls;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new Error(`invalid Hubble Relay TLS settings: certFile and keyFile must be set together (got certFile=${certFile}, keyFile=${keyFile})`);
  }

  const [ca, cert, key] = await Promise.all([
    readFile(caFile),
    certFile === undefined ? null : readFile(certFile),
    keyFile === undefined ? null : readFile(keyFile),
  ]);
  const options: Partial<ChannelOptions> = { ...keepalive };
  if (serverName !== undefined) {
    options['grpc.ssl_target_name_override'] = serverName;
    options['grpc.default_authority'] = serverName;
  }
  return { target: endpoint.address, credentials: credentials.createSsl(ca, key, cert), options };
}
