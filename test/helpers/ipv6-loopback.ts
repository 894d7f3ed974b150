import { once } from 'node:events';
import { createServer } from 'node:net';

/**
 * Tries to listen on `address` (by default the IPv6 loopback `::1`) on a free port. Returns
 * null when that works, or why the tests that need the address are skipped, for example on a
 * host or container whose loopback has no IPv6 address.
 */
export async function loopbackUnavailableReason(address = '::1'): Promise<string | null> {
  const server = createServer();
  try {
    server.listen(0, address);
    await once(server, 'listening');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    return `listening on ${address} failed with ${code}, so this machine has no IPv6 loopback`;
  }
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return null;
}
