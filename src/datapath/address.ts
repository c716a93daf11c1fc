// IP addresses as the datapath stores them: 16 bytes, IPv4 mapped into
// IPv6 (::ffff:a.b.c.d), so one key layout serves both families.

import ipaddr from 'ipaddr.js';

const MAPPED_PREFIX = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

// Parses an IPv4 or IPv6 address into its 16-byte datapath form.
export function addressToBytes(address: string): Buffer {
  // isValidFourPartDecimal rejects the legacy IPv4 forms ("10.1", "0x7f.1")
  // that ipaddr.isValid accepts and that a manifest never means.
  if (!ipaddr.IPv4.isValidFourPartDecimal(address) && !ipaddr.IPv6.isValid(address)) {
    throw new TypeError(`invalid IP address ${JSON.stringify(address)}: expected IPv4 (198.19.0.10) or IPv6 (fd5a::10)`);
  }

  const parsed = ipaddr.parse(address);
  if (parsed.kind() === 'ipv4') {
    return Buffer.concat([MAPPED_PREFIX, Buffer.from(parsed.toByteArray())]);
  }
  return Buffer.from(parsed.toByteArray());
}

export function isMappedIpv4(bytes: Uint8Array): boolean {
  return MAPPED_PREFIX.equals(bytes.subarray(0, 12));
}

// Formats 16 datapath bytes as the usual text form, IPv4 for mapped addresses.
export function bytesToAddress(bytes: Uint8Array): string {
  if (bytes.length !== 16) {
    throw new RangeError(`address is ${bytes.length} bytes, expected 16`);
  }
  if (isMappedIpv4(bytes)) {
    return ipaddr.fromByteArray(Array.from(bytes.subarray(12))).toString();
  }
  return ipaddr.fromByteArray(Array.from(bytes)).toString();
}
