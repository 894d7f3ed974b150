import net from 'node:net';

/**
 * Returns `host` as it appears in a URL: an IPv6 address in brackets (`[::1]`), as RFC 3986
 * requires, and any other host unchanged.
 * NOTE: WHATWG URLs, which fetch parses, have no form for an IPv6 zone id (`fe80::1%eth0`), so
 * a URL built from such a host does not parse.
 */
export function formatUrlHost(host: string): string {
  return net.isIPv6(host) ? `[${host}]` : host;
}

/** Builds the `http://HOST:PORT` origin of a server that listens on `host` and `port`. */
export function httpOrigin(host: string, port: number): string {
  return `http://${formatUrlHost(host)}:${port}`;
}
