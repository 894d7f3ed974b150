import { describe, expect, it } from 'vitest';
import { formatUrlHost, httpOrigin } from '../../src/net/url-host.ts';

describe('formatUrlHost', () => {
  it('brackets IPv6 addresses', () => {
    expect(formatUrlHost('::1')).toBe('[::1]');
    expect(formatUrlHost('::')).toBe('[::]');
    expect(formatUrlHost('2001:db8::5')).toBe('[2001:db8::5]');
  });

  it('keeps IPv4 addresses and names', () => {
    expect(formatUrlHost('127.0.0.1')).toBe('127.0.0.1');
    expect(formatUrlHost('localhost')).toBe('localhost');
  });
});

describe('httpOrigin', () => {
  it('builds a URL that parses for IPv6', () => {
    const origin = httpOrigin('::1', 3000);
    expect(origin).toBe('http://[::1]:3000');
    expect(new URL(`${origin}/webhooks/github`).port).toBe('3000');
  });

  it('builds an IPv4 origin', () => {
    expect(httpOrigin('127.0.0.1', 0)).toBe('http://127.0.0.1:0');
  });
});
