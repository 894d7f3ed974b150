import { describe, expect, it } from 'vitest';
import { rateLimitKey } from '../../src/web/session/client-address.ts';

describe('rateLimitKey', () => {
  it.each([
    ['198.51.100.4', '198.51.100.4'],
    ['::ffff:198.51.100.4', '198.51.100.4'],
    ['::FFFF:198.51.100.4', '198.51.100.4'],
    ['::ffff:c633:6404', '198.51.100.4'],
    ['0:0:0:0:0:ffff:c633:6404', '198.51.100.4'],
    ['2001:db8:0:7::1', '2001:db8:0:7::/64'],
    ['2001:0db8:0000:0007:ffff:ffff:ffff:ffff', '2001:db8:0:7::/64'],
    ['2001:DB8:0:7:a:b:c:d', '2001:db8:0:7::/64'],
    ['2001:db8::', '2001:db8:0:0::/64'],
    ['2001:db8::7:0:0:1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::198.51.100.4', '64:ff9b:0:0::/64'],
    ['unknown', 'unknown'],
    ['not-an-address', 'not-an-address'],
    ['2001:db8::g', '2001:db8::g'],
  ])('keys %s as %s', (address, key) => {
    expect(rateLimitKey(address)).toBe(key);
  });
});
