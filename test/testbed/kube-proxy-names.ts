// Chain names as kube-proxy's nftables mode builds them
// (servicePortChainNameBase and servicePortEndpointChainNameBase in
// kubernetes/kubernetes pkg/proxy/nftables/proxier.go, commit b0f823e6):
//
//   service-HASH-namespace/name/protocol/portName
//   external-HASH-namespace/name/protocol/portName
//   endpoint-HASH-namespace/name/protocol/portName__endpointIP/endpointPort
//
// protocol is lower case (tcp, udp, sctp) and portName is the Service port's
// name, empty for an unnamed port. HASH is the first 8 characters of the
// RFC 4648 base32 encoding of the SHA-256 of the text after "HASH-". An
// IPv6 endpoint address has its colons replaced by dots, because nft chain
// names cannot contain colons. Names longer than kube-proxy's limit of 240
// characters after the prefix are cut to 237 and end in "...".

import { createHash } from 'node:crypto';

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
// knftables.NameLengthMax (256) minus the longest prefix kube-proxy allows (16).
const NAME_BASE_LENGTH_MAX = 240;

export interface ServicePortName {
  namespace: string;
  name: string;
  // Lower-case protocol: tcp, udp or sctp.
  protocol: string;
  // The Service port's name, empty for an unnamed port.
  portName: string;
}

export function serviceChainName(port: ServicePortName): string {
  return `service-${hashAndTruncate(servicePortText(port))}`;
}

export function externalChainName(port: ServicePortName): string {
  return `external-${hashAndTruncate(servicePortText(port))}`;
}

export function endpointChainName(port: ServicePortName, address: string, endpointPort: number): string {
  return `endpoint-${hashAndTruncate(`${servicePortText(port)}__${address.replaceAll(':', '.')}/${endpointPort}`)}`;
}

// "namespace/name:portName", the form kube-proxy uses in element comments
// and logs (proxy.ServicePortName.String()).
export function servicePortLabel(port: ServicePortName): string {
  return `${port.namespace}/${port.name}${port.portName === '' ? '' : `:${port.portName}`}`;
}

function servicePortText(port: ServicePortName): string {
  return `${port.namespace}/${port.name}/${port.protocol}/${port.portName}`;
}

// Each sync names every chain of every Service port again, so names are
// kept, as kube-proxy keeps them in its per-port info. Cleared when full,
// which only costs hashing again.
const hashedNames = new Map<string, string>();
const HASHED_NAMES_MAX = 65_536;

function hashAndTruncate(text: string): string {
  const cached = hashedNames.get(text);
  if (cached !== undefined) return cached;

  // 5 bytes are the 40 bits of 8 base32 characters.
  const digest = createHash('sha256').update(text).digest();
  const full = `${base32(digest.subarray(0, 5))}-${text}`;
  const name = full.length > NAME_BASE_LENGTH_MAX ? `${full.slice(0, NAME_BASE_LENGTH_MAX - 3)}...` : full;

  if (hashedNames.size >= HASHED_NAMES_MAX) hashedNames.clear();
  hashedNames.set(text, name);
  return name;
}

// RFC 4648 base32 without padding, which is all the 8-character prefix needs.
function base32(bytes: Buffer): string {
  let output = '';
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      output += BASE32_ALPHABET[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  if (bits > 0) output += BASE32_ALPHABET[(buffer << (5 - bits)) & 31];
  return output;
}
