// The testbed's address plan. Every address sits inside 198.18.0.0/16 and
// fd5a::/16, and only inside namespaces that the testbed creates.
//
//   fabric (one bridge)   198.18.0.0/24          fd5a:18::/64
//   node i, eth0          198.18.0.(10+i)        fd5a:18::(10+i)
//   external client j     198.18.0.(200+j)       fd5a:18::(200+j)
//   node i, pod CIDR      198.18.(16+i).0/24     fd5a:18:(16+i)::/64
//   pod gateway on node i 198.18.(16+i).1        fe80::1 on each pod's host veth
//   pod slot k on node i  198.18.(16+i).k        fd5a:18:(16+i)::k      (k = 2..254)
//   Service IPs           198.19.0.0/16          fd5a:19::/64
//
// The IPv6 groups reuse the decimal digits of the IPv4 octets, so node 1's
// eth0 is fd5a:18::11 (hexadecimal 0x11) next to 198.18.0.11, and its pod
// in slot 5 is fd5a:18:17::5 next to 198.18.17.5. This reads well in packet
// captures, but it means the pod CIDRs do not form one IPv6 prefix, so
// podCidrs() lists them one by one.

export const FABRIC_PREFIX_V4 = 24;
export const FABRIC_PREFIX_V6 = 64;
export const SERVICE_CIDR_V4 = '198.19.0.0/16';
export const SERVICE_CIDR_V6 = 'fd5a:19::/64';
export const POD_GATEWAY_V6 = 'fe80::1';

// Node addresses run from .10 to .199 and pod CIDRs from 198.18.16.0/24 up,
// so 64 nodes stay clear of both the clients at .200 and the Service range.
export const MAX_NODES = 64;
export const MAX_EXTERNAL_CLIENTS = 55;
export const FIRST_POD_SLOT = 2;
export const LAST_POD_SLOT = 254;

export function nodeAddressV4(node: number): string {
  return `198.18.0.${10 + node}`;
}

export function nodeAddressV6(node: number): string {
  return `fd5a:18::${10 + node}`;
}

export function clientAddressV4(client: number): string {
  return `198.18.0.${200 + client}`;
}

export function clientAddressV6(client: number): string {
  return `fd5a:18::${200 + client}`;
}

export function podCidrV4(node: number): string {
  return `198.18.${16 + node}.0/24`;
}

export function podCidrV6(node: number): string {
  return `fd5a:18:${16 + node}::/64`;
}

export function podGatewayV4(node: number): string {
  return `198.18.${16 + node}.1`;
}

export function podAddressV4(node: number, slot: number): string {
  return `198.18.${16 + node}.${slot}`;
}

export function podAddressV6(node: number, slot: number): string {
  return `fd5a:18:${16 + node}::${slot}`;
}
