import { isIPv4, isIPv6 } from 'node:net';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import type { Config } from '../../config/env.ts';

/**
 * Returns the client's IP address: the socket's peer, or with TRUST_PROXY=true the last
 * X-Forwarded-For entry, which the nearest proxy appended. Returns "unknown" when neither
 * exists, as for in-process test requests.
 */
export function clientAddress(c: Context, config: Config): string {
  if (config.TRUST_PROXY) {
    const forwarded = c.req.header('x-forwarded-for')?.split(',').at(-1)?.trim();
    if (forwarded) return forwarded;
  }
  try {
    return getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Returns the key that a per-client rate limit counts `address` under. An IPv4 address is
 * its own key, and an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is keyed as its IPv4
 * address. Any other IPv6 address is keyed by its /64 prefix, such as `2001:db8:0:7::/64`,
 * because a host is usually given a whole /64 and can send from any address in it. A value
 * that is not an IP address, such as "unknown", is returned unchanged.
 */
export function rateLimitKey(address: string): string {
  if (isIPv4(address)) return address;
  // A zone index (`fe80::1%eth0`) names the local interface, not part of the address.
  const withoutZone = address.split('%')[0]!;
  if (!isIPv6(withoutZone)) return address;
  const groups = ipv6Groups(withoutZone);
  const mapped = groups.slice(0, 5).every((group) => group === 0) && groups[5] === 0xffff;
  if (mapped) {
    const [high, low] = [groups[6]!, groups[7]!];
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
  }
  const prefix = groups.slice(0, 4).map((group) => group.toString(16));
  return `${prefix.join(':')}::/64`;
}

/** Expands a valid IPv6 address into its eight 16-bit groups. */
function ipv6Groups(address: string): number[] {
  let text = address;
  // A dotted IPv4 tail (`::ffff:192.0.2.1`) is the last two groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    const high = ((a << 8) | b).toString(16);
    const low = ((c << 8) | d).toString(16);
    text = `${text.slice(0, lastColon + 1)}${high}:${low}`;
  }
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((group) => parseInt(group, 16)));
  const [head = '', rest] = text.split('::');
  const left = parse(head);
  if (rest === undefined) return left;
  const right = parse(rest);
  const zeros = new Array<number>(8 - left.length - right.length).fill(0);
  return [...left, ...zeros, ...right];
}
